"""The Redis client of the settings: URL, ACL user and password, TLS with the settings' CA.

Every process that talks to Redis builds its client here (the policy store through
:func:`splitee.policy_setup.store`), so ``redis.username`` / ``redis.password`` /
``redis.tls_cafile`` reach all of them. The password lives in the settings as a ``SecretStr``
and is revealed only here, to the client that sends it.
"""

from __future__ import annotations

import redis

from splitee.settings import RedisSettings


def client(r: RedisSettings, timeout_s: float = 2.0) -> redis.Redis:
    """A client for ``r.url`` (``rediss://`` for TLS, verified against ``r.tls_cafile``),
    authenticating as ``r.username`` when a password is set. ``timeout_s`` bounds connects and
    commands, so an unreachable Redis is noticed (the policy store rides it out)."""
    options: dict[str, object] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
    }
    if r.password is not None:
        options["username"] = r.username
        options["password"] = r.password.get_secret_value()
    if r.tls_cafile is not None:  # RedisSettings allows it with rediss:// only
        options["ssl_ca_certs"] = str(r.tls_cafile)
    return redis.Redis.from_url(r.url, **options)
