"""Push the folder, the Prometheus datasource and every dashboard to a Grafana (grafana-api).

For a Grafana that is not provisioned from ``deploy/grafana/provisioning`` (e.g. a shared
team instance): ``splitee dashboards push --url URL --token T``. Every step is idempotent:
things are looked up by their fixed uid and created when missing, updated when different,
left alone when equal, so pushing twice changes nothing the second time.

A dashboard is saved with the version it had when read, without ``overwrite``: if someone
saves it in Grafana between our read and our write, Grafana answers 412 (version mismatch)
and the push stops with that message instead of silently discarding their edit;
``overwrite=True`` (``--overwrite``) replaces it anyway.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

import requests
from grafana_api.grafana_api import (
    GrafanaClientError,
    GrafanaException,
    GrafanaUnauthorizedError,
)
from grafana_api.grafana_face import GrafanaFace

from splitee.observability.dashboards import DATASOURCE_NAME, DATASOURCE_UID

FOLDER_UID = "splitee"
IGNORED = ("id", "version")  # set by Grafana on save


class PushError(RuntimeError):
    """A push step failed; the message is one line an operator can act on."""


@dataclass(frozen=True)
class Step:
    kind: str  # folder, datasource, dashboard
    name: str
    action: str  # created, updated, unchanged

    def __str__(self) -> str:
        return f"{self.kind:<10} {self.name:<32} {self.action}"


def connect(url: str, token: str | None = None, basic: str | None = None) -> GrafanaFace:
    """A client for Grafana at ``url`` (``http[s]://host[:port][/prefix]``)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise PushError(f"--url must look like http://host:3000, got {url!r}")
    if basic:
        user, sep, password = basic.partition(":")
        if not sep:
            raise PushError("--basic must be USER:PASSWORD")
        auth: str | tuple[str, str] = (user, password)
    elif token:
        auth = token
    else:
        raise PushError("a Grafana token (--token or $SPLITEE_GRAFANA_TOKEN) is needed")
    prefix = u.path.strip("/")
    return GrafanaFace(
        auth,
        host=u.hostname,
        port=u.port,
        protocol=u.scheme,
        url_path_prefix=f"{prefix}/" if prefix else "",
        timeout=10.0,
    )


def _missing(exc: GrafanaException) -> bool:
    return isinstance(exc, GrafanaClientError) and exc.status_code == 404


def datasource_body(prometheus_url: str, scrape_interval: str) -> dict:
    """The Prometheus datasource every dashboard refers to by its fixed uid."""
    return {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": "prometheus",
        "access": "proxy",
        "url": prometheus_url,
        "isDefault": False,
        "jsonData": {"timeInterval": scrape_interval, "httpMethod": "POST"},
    }


class Pusher:
    """The push, one idempotent step per object."""

    def __init__(self, face: GrafanaFace, url: str) -> None:
        self.g = face
        self.url = url

    def folder(self, title: str) -> tuple[Step, dict]:
        try:
            found = self.g.folder.get_folder(FOLDER_UID)
        except GrafanaException as exc:
            if not _missing(exc):
                raise
            return Step("folder", title, "created"), self.g.folder.create_folder(title, FOLDER_UID)
        if found.get("title") == title:
            return Step("folder", title, "unchanged"), found
        updated = self.g.folder.update_folder(FOLDER_UID, title, version=found.get("version"))
        return Step("folder", title, "updated"), updated

    def datasource(self, body: dict) -> Step:
        try:
            found = self.g.api.GET(f"/datasources/uid/{DATASOURCE_UID}")
        except GrafanaException as exc:
            if not _missing(exc):
                raise
            self.g.datasource.create_datasource(body)
            return Step("datasource", body["name"], "created")
        if all(found.get(k) == v for k, v in body.items()):
            return Step("datasource", body["name"], "unchanged")
        self.g.datasource.update_datasource(found["id"], {**body, "id": found["id"]})
        return Step("datasource", body["name"], "updated")

    def dashboard(self, model: dict, folder: dict, overwrite: bool = False) -> Step:
        uid, title = model["uid"], model["title"]
        payload = {k: v for k, v in model.items() if k not in IGNORED}
        try:
            found = self.g.dashboard.get_dashboard(uid)
        except GrafanaException as exc:
            if not _missing(exc):
                raise
            found = None
        action = "created"
        body = {**payload, "id": None}
        if found is not None:
            have = {k: v for k, v in found["dashboard"].items() if k not in IGNORED}
            same_folder = found.get("meta", {}).get("folderUid") == folder.get("uid")
            if _canon(have) == _canon(payload) and same_folder:
                return Step("dashboard", title, "unchanged")
            action = "updated"
            body = {**payload, "id": found["dashboard"].get("id")}
            body["version"] = found["dashboard"].get("version")
        try:
            self.g.dashboard.update_dashboard(
                {
                    "dashboard": body,
                    "folderUid": folder.get("uid"),
                    "folderId": folder.get("id"),
                    "overwrite": overwrite,
                    "message": "splitee dashboards push",
                }
            )
        except GrafanaClientError as exc:
            if exc.status_code == 412:
                raise PushError(
                    f"dashboard {title!r} (uid {uid}) was changed in Grafana since it was read "
                    f"(412 version mismatch: {_message(exc)}); push again, or use --overwrite "
                    "to replace it"
                ) from None
            raise
        return Step("dashboard", title, action)


def _canon(model: dict) -> str:
    return json.dumps(model, sort_keys=True)


def _message(exc: GrafanaException) -> str:
    r = exc.response
    return str(r.get("message", r) if isinstance(r, dict) else r).strip()[:200]


def push(
    url: str,
    dashboards: dict[str, dict],
    prometheus_url: str,
    scrape_interval: str,
    folder_title: str = "splitee",
    token: str | None = None,
    basic: str | None = None,
    overwrite: bool = False,
) -> list[Step]:
    """Create or update the folder, the datasource and ``dashboards``; what each step did.

    Every failure is a :class:`PushError` with a one-line message.
    """
    p = Pusher(connect(url, token, basic), url)
    steps: list[Step] = []
    try:
        step, folder = p.folder(folder_title)
        steps.append(step)
        steps.append(p.datasource(datasource_body(prometheus_url, scrape_interval)))
        for model in dashboards.values():
            steps.append(p.dashboard(model, folder, overwrite))
    except GrafanaUnauthorizedError:
        raise PushError(
            f"Grafana at {url} refused the credentials (401 Unauthorized): check --token "
            "(a service account token with the Editor or Admin role)"
        ) from None
    except GrafanaClientError as exc:
        if exc.status_code == 403:
            raise PushError(
                f"Grafana at {url} forbids this (403): the token needs the Editor or Admin "
                f"role ({_message(exc)})"
            ) from None
        raise PushError(f"Grafana at {url} answered {exc.status_code}: {_message(exc)}") from None
    except GrafanaException as exc:
        raise PushError(f"Grafana at {url} failed: {_message(exc)}") from None
    except ValueError as exc:  # a non-JSON answer (not a Grafana, or a proxy page)
        raise PushError(f"{url} did not answer like Grafana's HTTP API: {exc}") from None
    except requests.RequestException as exc:
        raise PushError(f"cannot reach Grafana at {url}: {type(exc).__name__}") from None
    return steps
