"""A minimal client of Prometheus's HTTP API (``/api/v1/query``, ``/api/v1/query_range``).

``splitee top``, ``splitee report`` and the tests read Prometheus the way Grafana does: by
PromQL over HTTP. The standard library is enough for that, so no client package is needed;
errors become one :class:`PromError` whose message says what failed and where.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class PromError(RuntimeError):
    """Prometheus could not be reached, or refused the query."""


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as ``5s``, ``500ms`` or ``2m``.

    >>> parse_duration("5s"), parse_duration("500ms"), parse_duration("2m")
    (5.0, 0.5, 120.0)
    """
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"not a duration like 5s, 500ms or 2m: {text!r}")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def rate_window(scrape_interval: str) -> str:
    """A rate() window that always holds enough samples: 4 scrapes, at least 20 s.

    This is what Grafana's ``$__rate_interval`` resolves to for short dashboard steps.

    >>> rate_window("5s"), rate_window("1s"), rate_window("15s")
    ('20s', '20s', '60s')
    """
    return f"{max(20, math.ceil(4 * parse_duration(scrape_interval)))}s"


@dataclass
class Series:
    """One series of a result: its labels and (time, value) points (one for an instant query)."""

    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def value(self) -> float:
        """The last value (the only one of an instant query)."""
        return self.points[-1][1] if self.points else math.nan

    def label(self, *names: str) -> str:
        """The values of ``names`` joined by '/', for legends (``{}`` when none is set)."""
        vals = [self.labels[n] for n in names if n in self.labels]
        return "/".join(vals) if vals else "{}"


class PromClient:
    """Evaluate PromQL on one Prometheus server."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, str]) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad query; the body says why
            try:
                detail = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                detail = exc.reason
            raise PromError(
                f"Prometheus {self.url} refused {params.get('query')!r}: {detail}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PromError(f"cannot reach Prometheus at {self.url}: {reason}") from None
        if body.get("status") != "success":
            raise PromError(f"Prometheus {self.url}: {body.get('error', body)}")
        return body["data"]

    @staticmethod
    def _series(data: dict) -> list[Series]:
        kind = data.get("resultType")
        if kind == "scalar":
            t, v = data["result"]
            return [Series({}, [(float(t), float(v))])]
        out = []
        for r in data.get("result", []):
            pts = r.get("values") or ([r["value"]] if "value" in r else [])
            out.append(Series(dict(r.get("metric", {})), [(float(t), float(v)) for t, v in pts]))
        return out

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        """Instant query (at ``at``, default now)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self._series(self._get("/api/v1/query", params))

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """Range query from ``start`` to ``end`` (unix seconds) every ``step`` seconds."""
        params = {
            "query": expr,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{max(step, 0.001):.3f}",
        }
        return self._series(self._get("/api/v1/query_range", params))

    def scalar(self, expr: str, default: float = math.nan) -> float:
        """The value of a query that yields one series (``default`` when it yields none)."""
        res = self.query(expr)
        return res[0].value if res else default

    def targets(self) -> list[dict]:
        """The active scrape targets with their labels, health and last error."""
        return list(self._get("/api/v1/targets", {"state": "active"}).get("activeTargets", []))

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until the server answers a query (it may still be starting)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.query("1")
                return
            except PromError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds from ``15m``/``2h`` (that long ago), a unix timestamp or ISO 8601 time.

    >>> parse_time("15m", now=1000.0)
    100.0
    >>> parse_time("1700000000.5")
    1700000000.5
    >>> parse_time("2024-01-01T00:00:00+00:00")
    1704067200.0
    """
    from datetime import datetime

    now = time.time() if now is None else now
    text = text.strip()
    if _DURATION.match(text):
        return now - parse_duration(text)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use a duration ago like 15m, unix seconds or ISO 8601)"
        ) from None
