"""Typed settings for every role, from one TOML file and/or environment variables.

Precedence (highest first): keyword arguments, environment variables, the TOML file passed to
:func:`load_settings` (else the one named by ``SPLITEE_CONFIG``), then the defaults below.

Environment variables use the prefix ``SPLITEE_`` and ``__`` between nested names, e.g.
``SPLITEE_POLICY__ALPHA=0.6`` or ``SPLITEE_KAFKA__BOOTSTRAP=127.0.0.1:9092``. Every field is
documented in docs/settings.md, generated from this module by
``splitee settings --markdown``. Unknown keys are errors in every section, so a misspelt
setting fails loudly instead of silently keeping its default.

This module is the only place that reads the environment: every other module takes a
:class:`Settings` (or values from it).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from splitee.distortions import EVAL_DISTORTIONS

#: The repository root (where ``assets/`` lives) when running from a checkout.
REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"


#: The TOML file :func:`load_settings` was given, for the sources of the Settings it builds.
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("splitee_config_file", default=None)


class Section(BaseModel):
    """A settings section (``[kafka]`` …): unknown keys are errors, as at the top level.

    Errors name the field but never echo its value: a misspelt ``sasl_pasword`` must not print
    the password it holds (``splitee`` shows settings errors on the terminal and in logs).
    Frozen, as the whole :class:`Settings` is: what was loaded is what every part reads (a
    changed copy is ``model_copy(update=...)``).
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)


def _secure() -> bool:
    """``SPLITEE_SECURE=1``: the deploy scripts' secure mode (TLS, SCRAM, Redis ACL users). The
    client settings' defaults follow it, as the ports follow ``SPLITEE_KAFKA_PORT`` …"""
    return os.environ.get("SPLITEE_SECURE", "") == "1"


def _secure_cafile() -> Path | None:
    """The CA the deploy scripts' secure mode generates (``$SPLITEE_VAR_DIR/tls/ca.pem``)."""
    if not _secure():
        return None
    return Path(os.environ.get("SPLITEE_VAR_DIR") or REPO_ROOT / "var") / "tls" / "ca.pem"


def _default_data_dir() -> Path | None:
    """``../shared/data/cifar10`` beside the checkout, when it exists (the dev machines)."""
    candidate = REPO_ROOT.parent / "shared" / "data" / "cifar10"
    return candidate if candidate.is_dir() else None


def _repo_relative(value: Path | None) -> Path | None:
    """A relative path that does not exist from the working directory but does from the
    repository (settings files name assets/… while workers run in var/workers/)."""
    if value is None or value.is_absolute() or value.exists():
        return value
    return REPO_ROOT / value if (REPO_ROOT / value).exists() else value


def _default_images() -> Path | None:
    """``../shared/data/caltech101`` beside the checkout, when it exists (the dev machines)."""
    candidate = REPO_ROOT.parent / "shared" / "data" / "caltech101"
    return candidate if candidate.is_dir() else None


class DataSettings(Section):
    """Where CIFAR-10 comes from."""

    dir: Path | None = Field(
        default_factory=_default_data_dir,
        json_schema_extra={"doc_default": "<repo>/../shared/data/cifar10 when it exists"},
        description="Directory holding cifar10-jpeg-{train,test}.zip or the official "
        "cifar-10-binary.tar.gz / cifar-10-batches-bin.",
    )
    cache_dir: Path = Field(
        default=Path(os.path.expanduser("~/.cache/splitee")),
        description="Decoded-array cache (uint8 .npy files), model outputs cache, jar cache.",
    )
    download: bool = Field(
        default=False,
        description="Download the official CIFAR-10 binary archive into data.dir when missing.",
    )
    sample: Path = Field(
        default=ASSETS / "cifar10-sample.zip",
        description="Small JPEG sample shipped in the repo, used by the demo.",
    )
    images: Path | None = Field(
        default_factory=_default_images,
        json_schema_extra={"doc_default": "<repo>/../shared/data/caltech101 when it exists"},
        description="Real-size frames: a folder or zip with one sub-folder of JPEGs per class, "
        "or Caltech-101 (caltech101-jpeg.zip, or a folder holding it). `--data caltech101` and "
        "producer.source = 'images' read it.",
    )

    _images_in_repo = field_validator("images")(_repo_relative)


class BackboneSettings(Section):
    """A user's backbone: an unmodified ``nn.Module`` from a factory, exits by module path."""

    factory: str = Field(description="package.module:function, called with num_classes.")
    exits: list[str] = Field(
        min_length=1, description="Module paths after which exits sit, in forward's order."
    )
    input_size: int = Field(default=224, ge=8, description="Square input side in pixels.")
    mean: list[float] = Field(default=[0.485, 0.456, 0.406], min_length=3, max_length=3)
    std: list[float] = Field(default=[0.229, 0.224, 0.225], min_length=3, max_length=3)
    depths: list[int] = Field(
        default=[], description="ℓ_k of every arm (final included); default 1, 2, …"
    )


class ModelSettings(Section):
    """The multi-exit network."""

    arch: Literal["resnet20", "resnet32", "resnet44", "resnet56"] = "resnet56"
    exit_every: int = Field(default=3, ge=1, description="An exit after every n-th block.")
    checkpoint: Path = Field(
        default=ASSETS / "resnet56-multiexit.safetensors",
        description="Trained multi-exit checkpoint (safetensors) used by workers and evaluate.",
    )
    _checkpoint_in_repo = field_validator("checkpoint")(_repo_relative)
    pretrained_dir: Path | None = Field(
        default=REPO_ROOT.parent / "shared" / "data" / "weights" / "resnet_cifar10_akamaster",
        description="Folder with the akamaster CIFAR ResNet checkpoints used to start training.",
    )
    device: str = Field(default="auto", description="'auto' (CUDA when present), 'cpu' or 'cuda'.")
    backbone_weights: Path | None = Field(
        default=None,
        description="State dict (torch.load weights_only) for a backbone without weights of its "
        "own, e.g. one saved from torchvision's mobilenet_v2; `splitee train --backbone` starts "
        "from it.",
    )
    bottleneck: Path | None = Field(
        default=None,
        description="Learned bottleneck checkpoint (`splitee train-bottleneck`) for model."
        "checkpoint: split arms offload entropy-coded latents instead of raw tensors (edge "
        "encodes, cloud decodes); its base model's SHA-256 must match model.checkpoint.",
    )
    _bottleneck_in_repo = field_validator("bottleneck")(_repo_relative)
    bottleneck_max_drop: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Each arm codes at the rate point with the fewest bytes whose top-1 on the "
        "test split (the bottleneck's model card) is within this of the unsplit model's (where "
        "none is: within this of the arm's most accurate rate point).",
    )
    backbones: dict[str, BackboneSettings] = Field(
        default={},
        description="Your own backbones by name ([model.backbones.NAME] with factory, exits, "
        "input_size, mean, std): `splitee train --backbone NAME` trains their exits.",
    )


class PolicySettings(Section):
    """Bandit and reward parameters (I-SplitEE defaults)."""

    name: str = Field(
        default="isplitee",
        pattern=r"^(ucb1|isplitee|ducb|swucb|fixed:[1-9][0-9]*)$",
        description="ucb1 (SplitEE), isplitee (side observations), ducb (discounted UCB), "
        "swucb (sliding-window UCB) or fixed:<arm>.",
    )
    discount: float = Field(default=0.995, gt=0, le=1, description="ducb: decay per frame.")
    window: int = Field(default=1000, ge=1, description="swucb: window in frames.")
    alpha_grid: list[float] = Field(
        default=[],
        description="Threshold adaptation: when set, the bandit chooses (split arm, α) pairs "
        "from this grid instead of the arm alone; I-SplitEE's side observations then reach every "
        "threshold of the arms a frame computed.",
    )
    side_observations: bool = Field(
        default=False, description="ducb/swucb: also update shallower arms (as I-SplitEE)."
    )
    gamma: float = Field(default=0.1, ge=0, description="Edge compute cost per block (λ_k=γ·ℓ_k).")
    mu: float = Field(default=1.0, ge=0, description="Cost-to-confidence conversion factor.")
    alpha: float | None = Field(
        default=None,
        ge=0,
        le=1,
        json_schema_extra={"doc_default": "the model's, else 0.5"},
        description="Exit confidence threshold α. Unset: the checkpoint's own α (its `alpha` "
        "metadata, set per data set as SplitEE does; the Caltech-101 model's is 0.7), else 0.5.",
    )
    offload_cost: float = Field(default=0.5, ge=0, description="Offload (communication) cost o.")
    offload_cost_mode: Literal["constant", "bytes", "latency"] = Field(
        default="constant",
        description="o per offload: constant, or o·(bytes the offload carries: the frame's own "
        "JPEG for the send-frame arm)/jpeg_bytes with 'bytes' (the channel's air time is "
        "channel.offload_cost), or with "
        "'latency' o·(t_edge,k + 8·B_k/R)/(8·jpeg_bytes/uplink_mbps): the arm's time to reach "
        "the cloud (edge compute + payload on an uplink of rate R) in units of the JPEG's "
        "uplink time at the reference rate (real-size backbones; README, 'Costs in seconds').",
    )
    uplink_mbps: float = Field(
        default=10.0,
        ge=0.01,
        le=100000.0,
        description="'latency' mode: the edge uplink's rate in Mbit/s, the reference the JPEG's "
        "uplink time (one o) is taken at, and the rate R while uplink_rate = configured. Also "
        "the link rate the dashboards' 'share of the link' divides by.",
    )
    uplink_rate: Literal["configured", "measured"] = Field(
        default="configured",
        description="'latency' mode: R is uplink_mbps, or measured live by the cloud worker "
        "from the offloads it receives (edge batch bits against the time from the edge's send "
        "to the broker's append — give the offload topic message.timestamp.type = "
        "LogAppendTime — or else to the cloud's consume, read as a token-bucket shaper's "
        "rate and burst), so a rate change on the link re-prices the offloaded frames' rewards; "
        "shared with the edge workers through Redis for the rewards they score.",
    )
    uplink_halflife: int = Field(
        default=10,
        ge=1,
        le=1_000_000,
        description="uplink_rate = measured: half-life of the estimator's memory of how well "
        "each (rate, burst) hypothesis predicted the batches, in edge batches.",
    )
    edge_ms: list[float] | None = Field(
        default=None,
        json_schema_extra={"doc_default": "the model card's profile cpu_ms"},
        description="'latency' mode: the edge's compute time (ms) up to each of the model's "
        "exits, measured on the edge hardware (one thread, as splitee.models.profile's "
        "prefix_cpu_ms); None: the cpu_ms of the checkpoint's model card (its profile).",
    )
    send_frame_arm: bool | None = Field(
        default=None,
        json_schema_extra={"doc_default": "on with offload_cost_mode = bytes or latency"},
        description="Arm 0 sends the camera's JPEG to the cloud and computes nothing at the "
        "edge (real-size backbones); the model's arms follow as 1..L.",
    )
    jpeg_bytes: int = Field(
        default=15000,
        ge=1,
        description="Reference frame size for the 'bytes' and 'latency' modes (the median "
        "JPEG; the model card has the data set's).",
    )
    beta: float = Field(default=1.0, ge=0, description="UCB exploration weight.")
    seed: int = 0
    key: str = Field(default="global", description="Policy name in the store (its Redis key).")
    per_model: bool = Field(
        default=True,
        description="Keep each model's statistics apart: the policy's Redis keys carry the "
        "checkpoint's identity (SHA-256 prefix and arm count), so another model never reads or "
        "updates them. Off: keys are `<redis.namespace>:{<policy.key>}` alone, and a worker "
        "refuses to start on a policy of another arm count.",
    )
    scope: Literal["global", "camera", "context"] = Field(
        default="global",
        description="One policy for all cameras, one per camera, or one per context estimated "
        "from cheap image statistics (dark, noisy, blurry, normal; see splitee/context.py).",
    )
    cameras: list[str] | None = Field(
        default=None,
        description="scope = camera: the camera ids with a policy (a Redis key) of their own; "
        "frames from any other camera use the global policy (policy.key). None: the ids of "
        "producer.cameras.",
    )

    @field_validator("edge_ms")
    @classmethod
    def _edge_ms_bounded(cls, v: list[float] | None) -> list[float] | None:
        """Times are finite, ≥ 0 and under a minute: anything else is a typo, not an edge."""
        if v is not None and (not v or any(not 0.0 <= x <= 60_000.0 for x in v)):
            raise ValueError("edge_ms takes one time per exit, each in [0, 60000] ms")
        return v


class KafkaSettings(Section):
    """Kafka connection, topics and size limits (kept equal to the broker's)."""

    bootstrap: str = Field(
        default_factory=lambda: f"127.0.0.1:{os.environ.get('SPLITEE_KAFKA_PORT', '9092')}",
        json_schema_extra={"doc_default": "127.0.0.1:$SPLITEE_KAFKA_PORT (9092)"},
        description="Broker address; follows the deploy scripts' SPLITEE_KAFKA_PORT.",
    )
    group_prefix: str = Field(
        default="splitee", description="Consumer groups are <prefix>-edge and <prefix>-cloud."
    )
    api_version: str = Field(default="3.9", description="Explicit protocol version for clients.")
    frames_topic: str = "frames"
    truth_topic: str = "truth"
    offload_topic: str = "offload"
    results_topic: str = "results"
    partitions: int = Field(default=4, ge=1, description="Partitions of frames and offload.")
    dlq_suffix: str = Field(default=".dlq", description="Dead-letter topic = source + suffix.")
    max_message_bytes: int = Field(
        default=16 * 1024 * 1024,
        description="Must equal the broker's message.max.bytes (deploy/kafka).",
    )
    session_timeout_s: float = Field(
        default=10.0,
        ge=6.0,
        le=300.0,
        description="Workers' consumer-group session timeout: how long a dead worker's "
        "partitions wait before another worker takes them (the broker's minimum is 6 s).",
    )
    heartbeat_interval_s: float = Field(
        default=1.0, gt=0, description="Workers' heartbeat interval (under a third of the above)."
    )
    stall_restart_s: float = Field(
        default=60.0,
        ge=0,
        description="A worker whose group has lag that made no progress this long, while the "
        "worker took no batch, exits so its supervisor restarts it (a consumer faust left "
        "idle after a rebalance; splitee/worker/stall.py). 0: off.",
    )
    metadata_max_age_s: float = Field(
        default=5.0,
        gt=0,
        description="Clients refresh cluster metadata at least this often (faster recovery "
        "after a broker restart).",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default_factory=lambda: "SASL_SSL" if _secure() else "PLAINTEXT",
        json_schema_extra={"doc_default": "PLAINTEXT (SASL_SSL with $SPLITEE_SECURE=1)"},
        description="How every client (kafka-python, faust) talks to the broker.",
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism of the SASL_* protocols."
    )
    sasl_username: str | None = Field(default=None, description="SASL user (SASL_* protocols).")
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password; shown as ********** wherever settings are."
    )
    ssl_cafile: Path | None = Field(
        default_factory=_secure_cafile,
        json_schema_extra={"doc_default": "None ($SPLITEE_VAR_DIR/tls/ca.pem when secure)"},
        description="CA (PEM) that signed the broker's certificate (SSL, SASL_SSL); None: the "
        "system's CAs.",
    )

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        """A half-configured security setting fails at start-up, not at the first connection."""
        p = self.security_protocol
        if p.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol={p} needs sasl_username and sasl_password")
        if self.ssl_cafile is not None and p not in ("SSL", "SASL_SSL"):
            raise ValueError(f"ssl_cafile is set but security_protocol={p} uses no TLS")
        return self


class RedisSettings(Section):
    url: str = Field(
        default_factory=lambda: (
            f"{'rediss' if _secure() else 'redis'}://127.0.0.1:"
            f"{os.environ.get('SPLITEE_REDIS_PORT', '6379')}/0"
        ),
        json_schema_extra={
            "doc_default": "redis://127.0.0.1:$SPLITEE_REDIS_PORT (6379)/0 (rediss:// with "
            "$SPLITEE_SECURE=1)"
        },
        description="Redis URL (rediss:// for TLS), without credentials; follows the deploy "
        "scripts' SPLITEE_REDIS_PORT.",
    )
    username: str | None = Field(default=None, description="Redis ACL user (None: default).")
    password: SecretStr | None = Field(
        default=None, description="Its password; shown as ********** wherever settings are."
    )
    tls_cafile: Path | None = Field(
        default_factory=_secure_cafile,
        json_schema_extra={"doc_default": "None ($SPLITEE_VAR_DIR/tls/ca.pem when secure)"},
        description="CA (PEM) that signed the server's certificate (rediss://); None: the "
        "system's CAs.",
    )
    namespace: str = "splitee"
    read_cache_ms: float = Field(default=5.0, ge=0, description="Policy read cache lifetime.")
    sentinel: list[str] = Field(
        default=[],
        description="Redis Sentinel addresses (host:port): when set, clients ask them for the "
        "primary of redis.sentinel_master (the url then gives only the scheme and database).",
    )
    sentinel_master: str = Field(
        default="splitee", description="The primary's name in Sentinel (its master set)."
    )

    @field_validator("sentinel")
    @classmethod
    def _sentinel_addresses(cls, addresses: list[str]) -> list[str]:
        for a in addresses:
            host, _, port = a.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"redis.sentinel entries are host:port, got {a!r}")
        return addresses

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, url: str) -> str:
        """The URL is shown wherever settings are; the password belongs in ``password``."""
        if "@" in urlsplit(url).netloc:
            raise ValueError("credentials go in redis.username and redis.password, not the url")
        return url

    @model_validator(mode="after")
    def _security_is_complete(self) -> RedisSettings:
        if self.username and self.password is None:
            raise ValueError("redis.username needs redis.password")
        if self.tls_cafile is not None and urlsplit(self.url).scheme != "rediss":
            raise ValueError("tls_cafile is set but the url is not rediss:// (TLS)")
        return self


class EdgeSettings(Section):
    """Edge workers: batching, codec of offloaded features, side observations."""

    batch_size: int = Field(default=32, ge=1, description="Frames per batch (max).")
    max_queue_delay_ms: float = Field(
        default=20.0,
        gt=0,
        description="Dynamic batching (Triton's name): a batch is what is available now, up "
        "to batch_size; this bounds only the wait while nothing is available.",
    )
    codec: Literal["float32", "float16", "int8"] = Field(
        default="float16", description="Encoding of offloaded feature tensors."
    )
    threads: int = Field(
        default=1,
        ge=1,
        description="Compute threads per edge worker (torch's, or ONNX Runtime's intra-op).",
    )
    runtime: Literal["torch", "onnxruntime"] = Field(
        default="torch",
        description="What runs the edge's model: torch (model.checkpoint), or onnxruntime: the "
        "graphs `splitee export` wrote to edge.onnx_dir, with no torch in the worker's "
        "environment (`pip install '.[edge]'`).",
    )
    onnx_dir: Path | None = Field(
        default=None,
        description="Export directory of `splitee export` (manifest.json and graphs) for "
        "edge.runtime = onnxruntime. Its source checkpoint (and bottleneck) must be "
        "model.checkpoint's (and model.bottleneck's) where those files are present.",
    )
    _onnx_dir_in_repo = field_validator("onnx_dir")(_repo_relative)
    onnx_int8: bool = Field(
        default=False,
        description="With edge.runtime = onnxruntime: the int8 statically quantized edge graphs "
        "(`splitee export --int8`) instead of fp32.",
    )
    concurrency: int = Field(
        default=2,
        ge=1,
        description="Batches in flight per edge worker: one computes while another's outputs "
        "are being delivered (offsets still commit only after delivery).",
    )
    max_frame_bytes: int = Field(default=1 << 20, description="Larger frames go to the DLQ.")
    max_aspect: float = Field(
        default=20.0,
        ge=1.0,
        description="Real-size frames whose longer side exceeds this many times the shorter "
        "one go to the DLQ (bad_aspect), refused from the JPEG header.",
    )
    frame_quality: int | None = Field(
        default=None,
        ge=1,
        le=95,
        description="The send-frame arm sends the frame fitted to the model's input and "
        "re-encoded at this JPEG quality instead of the camera's JPEG (a fair cloud-only "
        "baseline on a thin uplink: bench/uplink.py's policy a'). None: the camera's JPEG. "
        "The bytes and latency costs still price arm 0 at policy.jpeg_bytes: set it to the "
        "re-encoded size when a learning policy runs with this.",
    )
    capture_ts_tolerance_s: float = Field(
        default=60.0,
        ge=0.0,
        description="Frames whose capture_ts lies further ahead of the record's Kafka timestamp "
        "(the producer's send time; the broker's with LogAppendTime) go to the DLQ "
        "(future_capture_ts): a clock years ahead would give negative latencies.",
    )

    @model_validator(mode="after")
    def _onnx_needs_its_export(self) -> EdgeSettings:
        if self.runtime == "onnxruntime" and self.onnx_dir is None:
            raise ValueError(
                "edge.runtime = onnxruntime needs edge.onnx_dir (run `splitee export` first)"
            )
        return self


class CloudSettings(Section):
    batch_size: int = Field(default=64, ge=1)
    max_queue_delay_ms: float = Field(
        default=20.0, gt=0, description="As edge.max_queue_delay_ms, for the cloud workers."
    )
    threads: int = Field(default=1, ge=1, description="torch threads per cloud worker (CPU).")


class CameraSettings(Section):
    """One simulated camera."""

    id: str
    fps: float = Field(default=25.0, gt=0)
    order: Literal["random", "fixed"] = "random"
    seed: int = 0
    schedule: list[str] = Field(
        default=["pristine"],
        description="Phases 'distortion@duration', duration in seconds ('60s') or frames "
        "('500f'); the last phase lasts forever unless cycle is true.",
    )
    cycle: bool = Field(default=False, description="Repeat the schedule (e.g. day/night).")


class ProducerSettings(Section):
    source: Literal["sample", "test", "train", "images"] = Field(
        default="sample",
        description="Frames: the shipped sample, data.dir's test/train, or real-size JPEGs from "
        "data.images (Caltech-101's test split, or every image of a class-folder set).",
    )
    count: int = Field(default=0, ge=0, description="Frames per camera; 0 = endless.")
    jpeg_quality: int = Field(
        default=90,
        ge=1,
        le=95,
        description="Re-encode quality of "
        "distorted frames (pristine frames are sent byte for byte).",
    )
    run_id: str = Field(default="", description="Tag carried by every frame (replays).")
    cameras: list[CameraSettings] = Field(
        default_factory=lambda: [
            CameraSettings(id="cam-1", seed=1),
            CameraSettings(id="cam-2", seed=2),
        ]
    )


class DeploySettings(Section):
    edge_workers: int = Field(default=2, ge=0)
    cloud_workers: int = Field(default=1, ge=0)
    metrics_port_base: int = Field(default=9200, description="Worker i serves metrics on base+i.")
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the processes serve /metrics on: loopback on a host, 0.0.0.0 in a "
        "container (the Helm chart) or a network namespace (deploy/hosts.sh).",
    )
    brokers: int = Field(
        default=1,
        ge=1,
        le=9,
        description="Kafka brokers the deploy scripts start (KRaft, combined controller+broker "
        "nodes); topics get replication factor min(3, brokers), min.insync.replicas 2 from 3 "
        "brokers on.",
    )

    hosts: bool = Field(
        default=False,
        description="deploy/up.sh puts every broker, Redis server, the edge site and the data "
        "centre on its own host: network namespaces of deploy/hosts.sh (root).",
    )
    edge_uplink_mbit: int = Field(
        default=0, ge=0, description="With deploy.hosts: shape the edge site's uplink (0: no)."
    )

    @property
    def replication_factor(self) -> int:
        """Replicas of every topic: one per broker up to 3 (the usual durability/cost point)."""
        return min(3, self.brokers)


class ObservabilitySettings(Section):
    """Prometheus, the evaluator and exporter services, Grafana (splitee.observability)."""

    prometheus_url: str = Field(
        default_factory=lambda: (
            f"http://127.0.0.1:{os.environ.get('SPLITEE_PROMETHEUS_PORT', '9090')}"
        ),
        json_schema_extra={"doc_default": "http://127.0.0.1:$SPLITEE_PROMETHEUS_PORT (9090)"},
        description="Prometheus HTTP API for top, report and Grafana's datasource; follows "
        "the deploy scripts' SPLITEE_PROMETHEUS_PORT.",
    )
    scrape_interval: str = Field(
        default_factory=lambda: os.environ.get("SPLITEE_SCRAPE_INTERVAL", "5s"),
        pattern=r"^[0-9]+(ms|s|m|h)$",
        json_schema_extra={"doc_default": "$SPLITEE_SCRAPE_INTERVAL (5s)"},
        description="Prometheus scrape interval (deploy scripts' SPLITEE_SCRAPE_INTERVAL): "
        "exporter refresh, rate windows, Grafana's datasource timeInterval.",
    )
    eval_window: int = Field(
        default=500, ge=1, description="Evaluator: frames in the sliding accuracy/cost window."
    )
    grafana_folder: str = Field(default="splitee", description="Grafana folder of the dashboards.")


class EvalSettings(Section):
    runs: int = Field(default=20, ge=1, description="Random stream orders per setting.")
    distortions: list[str] = Field(
        default=list(EVAL_DISTORTIONS),
        description="Distortion settings as kind:level.",
    )


class ChannelSettings(Section):
    """The wireless edge-to-cloud link and the transmission decision (algorithms.md §5)."""

    enabled: bool = Field(
        default=False,
        description="Simulate the link live: cameras stamp snr_db from channel.process, cloud "
        "workers pass offloaded features through channel.mode at that SNR.",
    )
    mode: Literal["analog", "digital"] = Field(
        default="analog", description="analog (DeepJSCC-style noisy features) or digital."
    )
    process: str = Field(
        default="constant:20",
        description="SNR process per camera: constant:DB, rayleigh:MEAN_DB[,COHERENCE], "
        "ge:GOOD_DB,BAD_DB,P_GB,P_BG or trace:CSV[,DT].",
    )
    arm: int = Field(
        default=7, ge=1, description="1-based split arm of `splitee evaluate-channel`."
    )
    symbol_rate: float = Field(default=1e6, gt=0, description="Channel uses per second.")
    bits: int = Field(default=8, ge=1, le=16, description="Digital: bits per feature value.")
    outage_snr_db: float = Field(default=0.0, description="Digital: outage below this SNR.")
    retries: int = Field(default=1, ge=0, description="Digital: retries after an outage.")
    td: Literal["alpha", "always", "never", "learned"] = Field(
        default="alpha",
        description="Edge transmission decision for frames with an SNR: the channel-blind C ≥ α "
        "rule, always/never transmit, or the learned classifier in channel.td_file.",
    )
    offload_cost: Literal["constant", "channel"] = Field(
        default="constant",
        description="Reward's offload cost o: constant, or scaled by the frame's air time "
        "(offloaded bytes over the link's capacity at its SNR; "
        "see policy_store.rewards.air_time_cost).",
    )
    td_file: Path | None = Field(
        default=None,
        description="JSON weights of the learned TD (written by splitee evaluate-channel).",
    )
    td_penalty: float = Field(
        default=0.01,
        ge=0,
        description="TD fitting maximises accuracy minus this times the fraction transmitted.",
    )


class Settings(BaseSettings):
    """All settings. See the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix="SPLITEE_",
        env_nested_delimiter="__",
        extra="forbid",
        hide_input_in_errors=True,  # as in every Section: an error never echoes a secret
        toml_file=None,
        frozen=True,  # loaded once; a changed copy is model_copy(update=...)
    )

    log_level: str = Field(default="WARNING", description="Structured log level.")
    log_levels: dict[str, str] = Field(
        default_factory=dict,
        description='Per-logger levels beside log_level, e.g. {"splitee.uplink": "DEBUG"} '
        "(the cloud worker's uplink rate samples) without every library's debug lines.",
    )

    @field_validator("log_levels")
    @classmethod
    def _known_levels(cls, v: dict[str, str]) -> dict[str, str]:
        known = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        bad = {name: lvl for name, lvl in v.items() if lvl.upper() not in known}
        if bad:
            raise ValueError(f"unknown log levels {bad}: use one of {sorted(known)}")
        return v

    var_dir: Path = Field(
        default=REPO_ROOT / "var",
        description="Runtime state of the deploy scripts and workers (faust data, Prometheus "
        "file_sd targets, pids, logs); the same variable the deploy scripts read.",
    )
    # Sections are built per Settings object (default_factory), so the defaults that follow
    # the deploy scripts' variables (SPLITEE_KAFKA_PORT …) are read when the settings are.
    data: DataSettings = Field(default_factory=DataSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    cloud: CloudSettings = Field(default_factory=CloudSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    channel: ChannelSettings = Field(default_factory=ChannelSettings)

    @field_validator("var_dir", mode="before")
    @classmethod
    def _empty_var_dir_is_default(cls, value: object) -> object:
        """An empty SPLITEE_VAR_DIR means the default, as in the deploy scripts (``${V:-…}``)."""
        return REPO_ROOT / "var" if value == "" else value

    @model_validator(mode="after")
    def _one_bytes_scaling(self) -> Settings:
        """o may follow the bytes sent once: policy.offload_cost_mode = "bytes" or "latency"
        and the channel's air time (channel.offload_cost = "channel") all scale it by the
        offload's bytes, so together they would charge bytes twice."""
        mode = self.policy.offload_cost_mode
        channel = self.channel.enabled and self.channel.offload_cost == "channel"
        if mode in ("bytes", "latency") and channel:
            raise ValueError(
                f"policy.offload_cost_mode = {mode!r} and channel.offload_cost = 'channel' "
                "both scale o by the bytes offloaded; choose one"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        named = os.environ.get("SPLITEE_CONFIG")
        path = _CONFIG_FILE.get() or (Path(named) if named else None)
        if path is not None:
            if not path.is_file():
                raise FileNotFoundError(f"settings file {path} does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Load settings, optionally from an explicit TOML file (takes the place of SPLITEE_CONFIG).

    The file reaches the sources through a context variable, not the environment, so loading
    settings leaves ``os.environ`` (and what child processes inherit) as it was.
    """
    token = _CONFIG_FILE.set(None if config is None else Path(config))
    try:
        return Settings(**overrides)
    finally:
        _CONFIG_FILE.reset(token)


def settings_markdown() -> str:
    """Every setting with its environment variable, default and description (docs/settings.md)."""
    rows = ["| setting | environment variable | default | description |", "|---|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            ann = f.annotation
            path = f"{prefix}{name}"
            if isinstance(ann, type) and issubclass(ann, BaseModel) and name != "cameras":
                walk(ann, path + ".")
                continue
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            default = extra.get("doc_default", f.get_default(call_default_factory=True))
            if isinstance(default, Path):
                default = (
                    str(default)
                    .replace(str(REPO_ROOT), "<repo>")
                    .replace(str(REPO_ROOT.parent), "<repo>/..")
                    .replace(os.path.expanduser("~"), "~")
                )
            if isinstance(default, list) and default and isinstance(default[0], BaseModel):
                default = f"{len(default)} entries"
            env = "SPLITEE_" + path.upper().replace(".", "__")
            desc = (f.description or "").replace("|", "\\|")
            rows.append(f"| `{path}` | `{env}` | `{default}` | {desc} |")

    walk(Settings, "")
    return "\n".join(rows)
