"""The learned bottleneck live: the edge encodes latents, the cloud decodes them, over real Kafka.

The real-size model with its shipped bottleneck checkpoint (model.bottleneck), the bytes-priced
offload cost and the send-frame arm, 1 edge + 1 cloud worker, 2 cameras streaming the shipped
Caltech-101 sample. Checked against what the servers hold: every frame one result and no dead
letter; every split-arm offload on the offload topic is a latent message of the model's latent
shape that the cloud's codec decodes, and its size is what the result reports; the JPEG arm
still carries the camera's JPEG; the edge's byte counter carries codec="latent".
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import numpy as np
import pytest

from splitee import policy_setup
from splitee.models import load_checkpoint
from splitee.results import collect_results, read_topic
from splitee.testing import REPO, Pipeline, free_port_block
from splitee.wire import LATENT_CODEC, FrameMeta, OffloadMeta
from tests.servers.test_caltech_live import assert_one_result_each, dlq_records, frames_sent, scrape

CHECKPOINT = REPO / "assets" / "efficientnet-lite0-caltech101.safetensors"
BOTTLENECK = REPO / "assets" / "efficientnet-lite0-caltech101-bottleneck.safetensors"
IMAGES = REPO / "assets" / "caltech101-sample.zip"
PER_CAMERA = 30
CAMERAS = [
    {"id": "cam-1", "fps": 10, "seed": 1, "schedule": ["pristine@15f", "noise:0.1@15f"]},
    {"id": "cam-2", "fps": 10, "seed": 2, "schedule": ["pristine@15f", "blur:1.5@15f"]},
]


@pytest.fixture(scope="module")
def run(servers, tmp_path_factory):
    tag = uuid.uuid4().hex[:6]
    p = Pipeline.create(
        tmp_path_factory.mktemp("bottleneck"),
        SPLITEE_MODEL__CHECKPOINT=str(CHECKPOINT),
        SPLITEE_MODEL__BOTTLENECK=str(BOTTLENECK),
        SPLITEE_DATA__IMAGES=str(IMAGES),
        SPLITEE_POLICY__NAME="isplitee",
        SPLITEE_POLICY__OFFLOAD_COST_MODE="bytes",
        SPLITEE_POLICY__JPEG_BYTES="12844",
        SPLITEE_POLICY__KEY=f"bn-{tag}",
        SPLITEE_PRODUCER__SOURCE="images",
        SPLITEE_PRODUCER__CAMERAS=json.dumps(CAMERAS),
        SPLITEE_PRODUCER__COUNT=str(PER_CAMERA),
    )
    edge, cloud = f"bn{tag}-edge", f"bn{tag}-cloud"
    port = free_port_block(1) + 1
    p.start("edge", edge, port)
    p.start("cloud", cloud)
    try:
        p.wait_ready(edge=1, cloud=1)
        run_id = f"bn-{tag}"
        json.loads(p.cli("produce", "--run-id", run_id))
        k = p.settings.kafka
        sent = frames_sent(p)
        view = collect_results(k, set(sent), timeout_s=120, run_id=run_id)
        offloads: list[tuple[OffloadMeta, bytes]] = []

        def on(rec) -> None:
            if FrameMeta.from_headers(rec.headers).frame_id in sent:
                offloads.append((OffloadMeta.from_headers(rec.headers), rec.value))

        read_topic(k, k.offload_topic, on, None, 60)
        time.sleep(1)
        yield {
            "p": p,
            "edge": edge,
            "sent": sent,
            "view": view,
            "offloads": offloads,
            "dlq": dlq_records(p),
            "metrics": scrape(port),
        }
    finally:
        p.stop()


def test_every_frame_one_result_none_dead(run):
    assert_one_result_each(run, 2 * PER_CAMERA)


def test_split_arm_offloads_are_latents_the_cloud_decodes(run):
    s = run["p"].settings
    net = load_checkpoint(s.model.checkpoint, fuse=True)
    net, _ = policy_setup.model_and_costs(s, net)
    codec = policy_setup.latent_codec(s, net)
    assert codec is not None and getattr(net, "send_frame", False)
    results = run["view"].results
    latents = [(om, v) for om, v in run["offloads"] if om.arm > 0]
    assert latents, f"no split-arm offload: {Counter(om.arm for om, _ in run['offloads'])}"
    for om, value in latents:
        assert om.codec == LATENT_CODEC and codec.handles(om.arm)
        z = codec.symbols(value, om.arm)
        assert z.shape == codec.latent_shape(om.arm)
        raw = 2 * int(np.prod(net.feature_shape(om.arm)))
        assert len(value) < raw / 4, (om.arm, len(value), raw)  # far below the float16 tensor
    for om, _ in run["offloads"]:
        if om.arm == 0:
            assert om.codec == "jpeg"
    sizes = {r.frame_id: r.offload_bytes for r in results.values() if r.where == "cloud"}
    assert sorted(sizes.values()) == sorted(len(v) for _, v in run["offloads"])
    by_codec: Counter[str] = Counter()
    for labels, v in run["metrics"]["splitee_offload_bytes_total"]:
        by_codec[labels["codec"]] += v
    assert by_codec[LATENT_CODEC] == sum(len(v) for om, v in latents)
    print(f"offloads by arm: {Counter(om.arm for om, _ in run['offloads'])}, bytes {by_codec}")
