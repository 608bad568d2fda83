"""The Helm chart (deploy/helm/splitee) rendered by a real helm: the objects it must contain,
and that what it hands the pods is what splitee's settings accept.

No cluster runs here: ``helm lint`` and ``helm template`` check the chart, not a deployment.
Needs helm (``.ci/run`` installs the pinned one into ~/go/bin); skipped, saying so, without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from splitee.settings import load_settings
from tests.conftest import REPO

CHART = REPO / "deploy" / "helm" / "splitee"
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
KUBE_VERSION = "1.30.0"  # helm built by `go install` assumes an old default cluster version


def _helm() -> str | None:
    found = shutil.which("helm")
    if found:
        return found
    local = Path.home() / "go" / "bin" / "helm"
    return str(local) if local.is_file() else None


HELM = _helm()
pytestmark = pytest.mark.skipif(
    HELM is None,
    reason="helm not found (install: go install helm.sh/helm/v3/cmd/helm@v3.22.0; .ci/run does)",
)


def render(*sets: str) -> list[dict]:
    """``helm template`` with ``--set`` pairs; the rendered objects."""
    args = [HELM, "template", "t", str(CHART), "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render_error(*sets: str) -> str:
    args = [HELM, "template", "t", str(CHART), "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, "helm template should have failed"
    return out.stderr


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(deployment: dict) -> dict:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def plain_env(c: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c["env"] if "value" in e}


def test_helm_lint_passes():
    out = subprocess.run(
        [HELM, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_render_has_every_role_its_metrics_and_autoscalers():
    docs = render()
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    print("\n".join(f"{k} {n}" for k, n in kinds))
    deps = by_kind(docs, "Deployment")
    assert set(deps) == {f"t-splitee-{r}" for r in ("edge", "cloud", "evaluator", "exporter")}
    for name, d in deps.items():
        c = container(d)
        role = name.removeprefix("t-splitee-")
        assert c["args"][0] == role and "--metrics-port" in c["args"]
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert "nvidia.com/gpu" not in str(c["resources"])
    # KEDA owns the replica count of the autoscaled roles
    assert "replicas" not in deps["t-splitee-edge"]["spec"]
    assert deps["t-splitee-evaluator"]["spec"]["replicas"] == 1

    services = by_kind(docs, "Service")
    assert set(services) == {f"{n}-metrics" for n in deps}
    for s in services.values():
        assert s["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert s["spec"]["ports"][0]["port"] == 9200
    assert not by_kind(docs, "ServiceMonitor")

    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == {"t-splitee-edge", "t-splitee-cloud"}
    for role, topic in (("edge", "frames"), ("cloud", "offload")):
        spec = scaled[f"t-splitee-{role}"]["spec"]
        assert spec["scaleTargetRef"]["name"] == f"t-splitee-{role}"
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == f"splitee-{role}" and meta["topic"] == topic
        assert meta["allowIdleConsumers"] == "false"
        assert spec["maxReplicaCount"] <= 8  # kafka.partitions

    (job,) = by_kind(docs, "Job").values()
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["topics", "create"]


def test_autoscaling_is_bounded_by_the_partition_count():
    docs = render("kafka.partitions=2", "edge.autoscaling.maxReplicas=8")
    assert by_kind(docs, "ScaledObject")["t-splitee-edge"]["spec"]["maxReplicaCount"] == 2
    assert "above the partition count" in render_error(
        "kafka.partitions=2", "cloud.autoscaling.minReplicas=3"
    )
    docs = render("edge.autoscaling.enabled=false", "edge.replicas=3")
    assert "t-splitee-edge" not in by_kind(docs, "ScaledObject")
    assert by_kind(docs, "Deployment")["t-splitee-edge"]["spec"]["replicas"] == 3


def test_the_settings_the_chart_hands_the_pods_are_valid_splitee_settings(tmp_path, monkeypatch):
    """The ConfigMap's TOML and every SPLITEE_* variable of a pod load as splitee Settings
    (unknown keys are errors there), with the values the chart was given."""
    docs = render("kafka.brokers=3", "redis.sentinel.addresses={s1:26379,s2:26379}")
    cm = by_kind(docs, "ConfigMap")["t-splitee-settings"]
    toml = tmp_path / "settings.toml"
    toml.write_text(cm["data"]["settings.toml"])
    env = plain_env(container(by_kind(docs, "Deployment")["t-splitee-edge"]))
    for key in list(os.environ):
        if key.startswith("SPLITEE_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("SPLITEE_") and key != "SPLITEE_CONFIG":
            monkeypatch.setenv(key, value)
    s = load_settings(toml)
    assert s.kafka.bootstrap == "splitee-kafka-bootstrap.kafka.svc:9092"
    assert s.kafka.partitions == 8
    assert s.deploy.metrics_host == "0.0.0.0"
    assert s.deploy.replication_factor == 3
    assert s.redis.sentinel == ["s1:26379", "s2:26379"]
    assert s.policy.name == "isplitee"


def test_gpu_cloud_workers_request_a_gpu_and_run_the_cuda_image():
    docs = render("cloud.gpu=1")
    c = container(by_kind(docs, "Deployment")["t-splitee-cloud"])
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["image"].endswith("-cuda")
    edge = container(by_kind(docs, "Deployment")["t-splitee-edge"])
    assert not edge["image"].endswith("-cuda")


def test_optional_cameras_and_service_monitors():
    docs = render("cameras.enabled=true", "metrics.serviceMonitor.enabled=true")
    assert container(by_kind(docs, "Deployment")["t-splitee-cameras"])["args"][0] == "produce"
    monitors = by_kind(docs, "ServiceMonitor")
    assert len(monitors) == 5
    m = monitors["t-splitee-cameras"]
    assert m["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    relabel = {
        r["targetLabel"]: r.get("replacement") for r in m["spec"]["endpoints"][0]["relabelings"]
    }
    assert relabel["job"] == "splitee" and relabel["role"] == "producer"


def test_dashboards_are_configmaps_for_grafanas_sidecar():
    docs = render()
    cms = by_kind(docs, "ConfigMap")
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files
    for f in files:
        cm = cms[f"t-splitee-dashboard-{f.stem}"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"][f.name]) == json.loads(f.read_text())
    ds = yaml.safe_load(cms["t-splitee-datasource"]["data"]["splitee-datasource.yaml"])
    assert ds["datasources"][0]["uid"] == "splitee-prometheus"


def test_secrets_come_from_existing_secrets_only():
    docs = render(
        "kafka.securityProtocol=SASL_SSL",
        "kafka.sasl.username=splitee",
        "kafka.sasl.existingSecret=splitee-kafka-user",
        "kafka.tls.caSecret=kafka-cluster-ca-cert",
        "redis.existingSecret=redis",
        "redis.username=worker",
    )
    c = container(by_kind(docs, "Deployment")["t-splitee-cloud"])
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in c["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs["SPLITEE_KAFKA__SASL_PASSWORD"] == {"name": "splitee-kafka-user", "key": "password"}
    assert refs["SPLITEE_REDIS__PASSWORD"] == {"name": "redis", "key": "redis-password"}
    env = plain_env(c)
    assert env["SPLITEE_KAFKA__SSL_CAFILE"] == "/etc/splitee/kafka-ca/ca.crt"
    assert "PASSWORD" not in " ".join(env)  # no password in clear anywhere in the pod spec
    (auth,) = by_kind(docs, "TriggerAuthentication").values()
    params = {r["parameter"] for r in auth["spec"]["secretTargetRef"]}
    assert params == {"password", "ca"}
    trigger = by_kind(docs, "ScaledObject")["t-splitee-edge"]["spec"]["triggers"][0]
    assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert "kafka.sasl.existingSecret" in render_error("kafka.securityProtocol=SASL_SSL")
