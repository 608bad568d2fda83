"""The Redis client of the settings: URL, ACL user and password, TLS with the settings' CA.

Every process that talks to Redis builds its client here (the policy store through
:func:`splitee.policy_setup.store`), directly or through Redis Sentinel, so ``redis.username``
/ ``redis.password`` / ``redis.tls_cafile`` reach all of them. The password lives in the
settings as a ``SecretStr`` and is revealed only here, to the client that sends it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from redis.sentinel import Sentinel

from splitee.settings import RedisSettings


def client(r: RedisSettings, timeout_s: float = 2.0) -> redis.Redis:
    """A client for ``r.url`` (``rediss://`` for TLS, verified against ``r.tls_cafile``),
    authenticating as ``r.username`` when a password is set. ``timeout_s`` bounds connects and
    commands, so an unreachable Redis is noticed (the policy store rides it out).

    With ``r.sentinel`` the client asks those Sentinels for the current primary of
    ``r.sentinel_master`` on every new connection: after a failover the next command (the
    policy store retries) reaches the promoted replica, and a demoted primary that answers
    READONLY drops the connection so that the next one asks again."""
    options: dict[str, object] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
    }
    if r.password is not None:
        options["username"] = r.username
        options["password"] = r.password.get_secret_value()
    if r.tls_cafile is not None:  # RedisSettings allows it with rediss:// only
        options["ssl_ca_certs"] = str(r.tls_cafile)
    if not r.sentinel:
        return redis.Redis.from_url(r.url, **options)
    url = urlsplit(r.url)
    tls = {"ssl": True} if url.scheme == "rediss" else {}
    if tls and r.tls_cafile is not None:
        tls["ssl_ca_certs"] = str(r.tls_cafile)
    db = int(url.path.lstrip("/") or 0)
    sentinels = [(h, int(p)) for h, _, p in (a.rpartition(":") for a in r.sentinel)]
    timeouts = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel(sentinels, sentinel_kwargs={**timeouts, **tls})
    return sentinel.master_for(r.sentinel_master, db=db, **options, **tls)
