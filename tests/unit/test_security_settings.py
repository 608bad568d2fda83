"""Security settings: typed, wired into every client's options, and never shown in clear.

The live checks against servers in secure mode are in tests/servers/test_security.py.
"""

from __future__ import annotations

import logging
import os
import ssl

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from splitee import kafka_io, redis_io
from splitee.cli import main
from splitee.settings import KafkaSettings, RedisSettings, Settings

SECRET = "hunter2-very-secret"
MASK = "**********"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SPLITEE_ variable of the caller's shell decides what these tests see."""
    for key in list(os.environ):
        if key.startswith("SPLITEE_"):
            monkeypatch.delenv(key)


def sasl(**kw: object) -> KafkaSettings:
    base = {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": SECRET}
    return KafkaSettings(**{**base, **kw})


def test_settings_command_masks_the_secrets(monkeypatch):
    monkeypatch.setenv("SPLITEE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SPLITEE_KAFKA__SASL_USERNAME", "u")
    monkeypatch.setenv("SPLITEE_KAFKA__SASL_PASSWORD", SECRET)
    monkeypatch.setenv("SPLITEE_REDIS__USERNAME", "u")
    monkeypatch.setenv("SPLITEE_REDIS__PASSWORD", SECRET)
    res = CliRunner().invoke(main, ["settings"])
    assert res.exit_code == 0, res.output
    assert SECRET not in res.output
    assert f'"sasl_password": "{MASK}"' in res.output and f'"password": "{MASK}"' in res.output
    # the values still reach the clients
    s = Settings()
    assert kafka_io.security(s.kafka)["sasl_plain_password"] == SECRET
    assert redis_io.client(s.redis).connection_pool.connection_kwargs["password"] == SECRET


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kafka": {"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_pasword": SECRET}},
        {"kafka": {"security_protocol": "SASL_SSL", "sasl_password": SECRET}},  # no user
        {"kafka": {"sasl_password": SECRET, "ssl_cafile": "/ca.pem"}},  # TLS file, no TLS
        {"redis": {"url": f"rediss://u:{SECRET}@127.0.0.1:6379/0"}},  # credentials in the URL
        {"redis": {"password": SECRET, "tls_cafile": "/ca.pem"}},  # redis://, a CA
        {"redis_password": SECRET},  # at the top level
    ],
)
def test_a_settings_error_never_echoes_a_secret(kwargs):
    with pytest.raises(ValidationError) as err:
        Settings(**kwargs)
    assert SECRET not in str(err.value)


def test_the_cli_names_a_bad_setting_without_its_value(monkeypatch):
    monkeypatch.setenv("SPLITEE_REDIS__URL", f"redis://:{SECRET}@127.0.0.1:6379/0")
    res = CliRunner().invoke(main, ["settings"])
    assert res.exit_code != 0 and "redis.url" in res.output and SECRET not in res.output


def test_secure_mode_defaults_follow_the_deploy_scripts(monkeypatch, tmp_path):
    s = Settings()
    assert s.kafka.security_protocol == "PLAINTEXT" and s.kafka.ssl_cafile is None
    assert s.redis.url.startswith("redis://") and s.redis.tls_cafile is None
    monkeypatch.setenv("SPLITEE_SECURE", "1")
    monkeypatch.setenv("SPLITEE_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("SPLITEE_KAFKA__SASL_USERNAME", "u")
    monkeypatch.setenv("SPLITEE_KAFKA__SASL_PASSWORD", SECRET)
    s = Settings()
    assert s.kafka.security_protocol == "SASL_SSL"
    assert s.kafka.ssl_cafile == s.redis.tls_cafile == tmp_path / "tls" / "ca.pem"
    assert s.redis.url.startswith("rediss://")
    monkeypatch.delenv("SPLITEE_KAFKA__SASL_PASSWORD")
    with pytest.raises(ValidationError, match="needs sasl_username and sasl_password"):
        Settings()


def test_kafka_client_options_per_protocol(tmp_path):
    assert kafka_io.security(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}
    assert kafka_io.faust_credentials(KafkaSettings()) is None
    ca = tmp_path / "ca.pem"
    assert kafka_io.security(sasl(ssl_cafile=ca, sasl_mechanism="SCRAM-SHA-256")) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "u",
        "sasl_plain_password": SECRET,
        "ssl_cafile": str(ca),
    }
    plain = sasl(security_protocol="SASL_PLAINTEXT")
    assert "ssl_cafile" not in kafka_io.security(plain)

    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    cred = kafka_io.faust_credentials(sasl())
    assert isinstance(cred, faust.SASLCredentials) and SECRET not in repr(cred)
    auth = credentials_to_aiokafka_auth(cred)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_plain_password"] == SECRET
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert auth["ssl_context"].check_hostname
    assert credentials_to_aiokafka_auth(kafka_io.faust_credentials(plain)) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u",
        "sasl_plain_password": SECRET,
        "ssl_context": None,
    }
    tls_only = kafka_io.faust_credentials(KafkaSettings(security_protocol="SSL"))
    assert credentials_to_aiokafka_auth(tls_only)["security_protocol"] == "SSL"


def test_redis_client_options(tmp_path):
    r = RedisSettings(
        url="rediss://127.0.0.1:6390/0", username="u", password=SECRET, tls_cafile=tmp_path
    )
    pool = redis_io.client(r).connection_pool  # no connection is made until a command
    kw = pool.connection_kwargs
    assert (kw["username"], kw["password"], kw["ssl_ca_certs"]) == ("u", SECRET, str(tmp_path))
    assert pool.connection_class.__name__ == "SSLConnection"
    plain = redis_io.client(RedisSettings(url="redis://127.0.0.1:6390/0")).connection_pool
    assert plain.connection_kwargs.get("password") is None
    assert plain.connection_class.__name__ == "Connection"


def test_kafka_admin_config_log_masks_the_password(caplog):
    """kafka-python's admin client logs its configuration exactly like this at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="kafka.admin.client")
    configs = {"bootstrap_servers": "127.0.0.1:1", "sasl_plain_password": SECRET}
    logging.getLogger("kafka.admin.client").debug(
        "Starting KafkaAdminClient with configuration: %s", configs
    )
    assert SECRET not in caplog.text and MASK in caplog.text
    assert configs["sasl_plain_password"] == SECRET  # the client's own dict is left alone
