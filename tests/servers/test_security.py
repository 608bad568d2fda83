"""Secure mode, live: Kafka over SASL_SSL with SCRAM users and Redis over TLS with an ACL user,
both started by the deploy scripts with ``SPLITEE_SECURE=1`` on their own free ports and var
dir (beside the session's plaintext servers); and Prometheus' lifecycle API, off by default.

Each client is the project's own (``splitee.kafka_io``, the faust app's credentials,
``splitee.policy_setup.store``), configured from typed settings only; the passwords must show up
nowhere: not in logs, not in a recording's manifest, not in any file under the var dir.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from kafka.errors import KafkaConnectionError

from policy_store.stats import Delta
from splitee import kafka_io, policy_setup, redis_io
from splitee.recorder import record
from splitee.settings import KafkaSettings, RedisSettings, Settings
from splitee.testing import free_port, free_ports
from tests.conftest import REPO

USER = "splitee-test"
KAFKA_PASSWORD = "k-" + secrets.token_hex(12)
REDIS_PASSWORD = "r-" + secrets.token_hex(12)
NAMESPACE = "sectest"  # the ACL user's keys: sectest:* only
MASK = "**********"


def deploy(script: str, env: dict[str, str]) -> None:
    subprocess.run(["bash", str(REPO / "deploy" / script)], env=env, check=True, timeout=180)


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """Kafka and Redis in secure mode (deploy/secure.sh), stopped by their stop scripts."""
    var = tmp_path_factory.mktemp("secure-var")
    kafka_port, controller_port, redis_port = free_ports(3)
    env = {
        **os.environ,
        "SPLITEE_SECURE": "1",
        "SPLITEE_VAR_DIR": str(var),
        "SPLITEE_KAFKA_PORT": str(kafka_port),
        "SPLITEE_KAFKA_CONTROLLER_PORT": str(controller_port),
        "SPLITEE_REDIS_PORT": str(redis_port),
        "SPLITEE_KAFKA__SASL_USERNAME": USER,
        "SPLITEE_KAFKA__SASL_PASSWORD": KAFKA_PASSWORD,
        "SPLITEE_REDIS__USERNAME": USER,
        "SPLITEE_REDIS__PASSWORD": REDIS_PASSWORD,
        "SPLITEE_REDIS__NAMESPACE": NAMESPACE,
    }
    try:
        deploy("redis-start.sh", env)
        deploy("kafka-start.sh", env)
        yield SimpleNamespace(
            var=var,
            ca=var / "tls" / "ca.pem",
            bootstrap=f"127.0.0.1:{env['SPLITEE_KAFKA_PORT']}",
            redis_url=f"rediss://127.0.0.1:{env['SPLITEE_REDIS_PORT']}/0",
        )
    finally:
        for script in ("kafka-stop.sh", "redis-stop.sh"):
            subprocess.run(["bash", str(REPO / "deploy" / script)], env=env, timeout=60)


def settings(sec, *, kafka_password: str = KAFKA_PASSWORD, **redis: object) -> Settings:
    """Settings for the secure servers: the Kafka user, and ``redis`` for the Redis section.
    (Sections passed as objects are taken whole: no SPLITEE_ variable of the caller's shell
    adds credentials to them.)"""
    return Settings(
        kafka=KafkaSettings(
            bootstrap=sec.bootstrap,
            security_protocol="SASL_SSL",
            sasl_username=USER,
            sasl_password=kafka_password,
            ssl_cafile=sec.ca,
        ),
        redis=RedisSettings(
            **{"url": sec.redis_url, "tls_cafile": sec.ca, "namespace": NAMESPACE, **redis}
        ),
    )


def redis_user() -> dict[str, str]:
    return {"username": USER, "password": REDIS_PASSWORD}


def first_value(k: KafkaSettings, topic: str, timeout_s: float) -> bytes | None:
    """The first record's value in ``topic`` (None when none comes within ``timeout_s``)."""
    c = kafka_io.consumer(k, topic, group_id=None, consumer_timeout_ms=int(timeout_s * 1000))
    try:
        return next((rec.value for rec in c), None)
    finally:
        c.close()


def test_kafka_round_trip_over_sasl_ssl(secure, caplog, tmp_path):
    s = settings(secure, **redis_user())
    k = s.kafka
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.DEBUG, logger="kafka.admin.client")
    assert kafka_io.create_topics(k, {topic: 1}) == [topic]
    # kafka-python logs the admin client's whole configuration: the password is masked
    assert "sasl_plain_password" in caplog.text and MASK in caplog.text
    assert KAFKA_PASSWORD not in caplog.text

    p = kafka_io.producer(k)
    p.send(topic, key=b"k", value=b"kafka-python").get(timeout=30)
    p.close()

    assert first_value(k, topic, 20) == b"kafka-python"

    # a recording over the same connection (and its policy snapshot over TLS Redis) stores
    # the settings with the secrets masked
    manifest = record(
        s.model_copy(update={"kafka": k.model_copy(update={"frames_topic": topic})}),
        tmp_path / "rec",
        ["frames"],
        count=1,
        from_beginning=True,
        progress=False,
    )
    assert manifest.policy["error"] is None and manifest.policy["start"] is not None
    assert sum(manifest.counts.values()) == 1
    assert manifest.settings["kafka"]["sasl_password"] == MASK
    assert manifest.settings["redis"]["password"] == MASK
    for f in (tmp_path / "rec").rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert KAFKA_PASSWORD.encode() not in data and REDIS_PASSWORD.encode() not in data


def test_faust_worker_over_sasl_ssl(secure, tmp_path):
    """A faust worker built by splitee.worker.runtime.build_app joins its consumer group and
    produces over SASL_SSL, with the settings from the environment as a deployed worker has
    them."""
    k = settings(secure).kafka
    src, dst = f"sec-src-{uuid.uuid4().hex[:8]}", f"sec-dst-{uuid.uuid4().hex[:8]}"
    kafka_io.create_topics(k, {src: 1, dst: 1})
    env = {
        **os.environ,
        "SPLITEE_VAR_DIR": str(tmp_path),
        "SPLITEE_KAFKA__BOOTSTRAP": k.bootstrap,
        "SPLITEE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "SPLITEE_KAFKA__SASL_USERNAME": USER,
        "SPLITEE_KAFKA__SASL_PASSWORD": KAFKA_PASSWORD,
        "SPLITEE_KAFKA__SSL_CAFILE": str(secure.ca),
        "SPLITEE_KAFKA__GROUP_PREFIX": f"sec-{uuid.uuid4().hex[:8]}",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-c", FAUST_ECHO, src, dst], env=env, stdout=out, stderr=out
        )
    try:
        p = kafka_io.producer(k)
        p.send(src, key=b"k", value=b"through faust").get(timeout=30)
        p.close()
        got = first_value(k, dst, 60)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    text = log.read_text(errors="replace")
    assert got == b"through faust", text[-3000:]
    assert KAFKA_PASSWORD not in text


# A faust worker of splitee.worker.runtime.build_app that copies SRC to DST (argv), settings from
# env.
FAUST_ECHO = """
import sys
import faust
from splitee.worker.runtime import build_app, raw_topic
from splitee.settings import Settings

s = Settings()
app = build_app(s.kafka.group_prefix + "-echo", s)
src, dst = raw_topic(app, sys.argv[1]), raw_topic(app, sys.argv[2])


@app.agent(src)
async def echo(stream):
    async for event in stream.events():
        await dst.send(key=event.message.key, value=event.message.value)


faust.Worker(app, loglevel="INFO", quiet=True, redirect_stdouts=False).execute_from_commandline()
"""


def test_kafka_wrong_password_is_refused(secure, caplog):
    k = settings(secure, kafka_password="wrong-" + KAFKA_PASSWORD, **redis_user()).kafka
    caplog.set_level(logging.ERROR, logger="kafka.conn")
    with pytest.raises(KafkaConnectionError):
        kafka_io.admin(k, timeout_s=5)
    assert "SaslAuthenticationFailedError" in caplog.text


def test_redis_acl_user_over_tls(secure):
    store = policy_setup.store(settings(secure, **redis_user()), 4, cache_ms=0)
    d = Delta.zeros(4)
    d.add(2, [(2, 0.5), (1, 0.25)], frame_id="f1")
    store.apply("global", d)
    assert store.up and store.pending_frames == 0
    assert store.read("global").n.tolist() == [0.0, 1.0, 1.0, 0.0]

    # the ACL user may touch its namespace only
    other = policy_setup.store(settings(secure, **redis_user(), namespace="other"), 4, 0)
    with pytest.raises(redis.exceptions.NoPermissionError):
        other.apply("global", d)

    # no credentials (the default user is off), a wrong password, or no TLS: refused
    anonymous = settings(secure)
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis_io.client(anonymous.redis).ping()
    wrong = settings(secure, username=USER, password="wrong-" + REDIS_PASSWORD)
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis_io.client(wrong.redis).ping()
    plain = anonymous.redis.model_copy(
        update={"url": secure.redis_url.replace("rediss://", "redis://"), "tls_cafile": None}
    )
    with pytest.raises(redis.exceptions.ConnectionError):
        redis_io.client(plain).ping()
    # … and the policy store without credentials says so: a configuration fault, not an outage
    # to wait out (the worker stops with this error; nothing is applied)
    refused = policy_setup.store(anonymous, 4, cache_ms=0)
    with pytest.raises(redis.exceptions.AuthenticationError):
        refused.apply("global", d)
    assert store.read("global").n.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_no_password_in_any_server_file(secure):
    """Configs, logs, data: Redis keeps a SHA-256 of its password, Kafka salted SCRAM hashes.
    (Kafka's preallocated offset indexes, which hold offsets only, are left out.)"""
    files = [
        f
        for f in Path(secure.var).rglob("*")
        if f.is_file() and f.suffix not in (".index", ".timeindex")
    ]
    assert any(f.name == "redis.conf" for f in files) and any(f.suffix == ".log" for f in files)
    for f in files:
        data = f.read_bytes()
        assert KAFKA_PASSWORD.encode() not in data, f
        assert REDIS_PASSWORD.encode() not in data, f


def post_reload(port: int) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/-/reload", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_prometheus_lifecycle_api_only_when_asked(tmp_path):
    port = free_port()
    env = {**os.environ, "SPLITEE_VAR_DIR": str(tmp_path), "SPLITEE_PROMETHEUS_PORT": str(port)}
    env.pop("SPLITEE_PROMETHEUS_LIFECYCLE", None)
    try:
        deploy("prometheus-start.sh", env)
        assert post_reload(port) == 403  # "Lifecycle API is not enabled"
        deploy("prometheus-stop.sh", env)
        deploy("prometheus-start.sh", {**env, "SPLITEE_PROMETHEUS_LIFECYCLE": "1"})
        assert post_reload(port) == 200
    finally:
        deploy("prometheus-stop.sh", env)
