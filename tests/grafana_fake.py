"""A small fake of the Grafana HTTP API endpoints ``splitee dashboards push`` calls.

Folders, datasources (by uid and id) and dashboards (``/api/dashboards/db`` with Grafana's
version check: 412 ``version-mismatch`` when the saved version is not the stored one and
``overwrite`` is false), bearer-token authentication (401 otherwise). ``concurrent_edit``
makes the next dashboard save race with a simulated edit in the UI.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeGrafana:
    def __init__(self, token: str = "good-token") -> None:
        self.token = token
        self.folders: dict[str, dict] = {}
        self.datasources: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}  # uid -> {"dashboard": ..., "folderUid": ...}
        self.calls: list[tuple[str, str]] = []
        self.concurrent_edit = False
        self._ids = iter(range(1, 10_000))
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def _send(self, code: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                with fake.lock:
                    fake.calls.append((method, self.path))
                    if self.headers.get("Authorization") != f"Bearer {fake.token}":
                        return self._send(401, {"message": "invalid API key"})
                    code, out = fake.route(method, self.path, body)
                self._send(code, out)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGrafana:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ routes
    def route(self, method: str, path: str, body: dict | None) -> tuple[int, object]:
        parts = path.split("?")[0].strip("/").split("/")
        if parts[:1] != ["api"]:
            return 404, {"message": "not found"}
        parts = parts[1:]
        if parts[0] == "folders":
            return self._folders(method, parts[1:], body)
        if parts[0] == "datasources":
            return self._datasources(method, parts[1:], body)
        if parts[0] == "dashboards":
            return self._dashboards(method, parts[1:], body)
        return 404, {"message": "not found"}

    def _folders(self, method: str, rest: list[str], body: dict | None) -> tuple[int, object]:
        if method == "GET" and len(rest) == 1:
            f = self.folders.get(rest[0])
            return (200, f) if f else (404, {"message": "folder not found"})
        if method == "POST" and not rest:
            uid = body.get("uid") or f"f{next(self._ids)}"
            if uid in self.folders:
                return 409, {"message": "a folder with that uid already exists"}
            self.folders[uid] = {"id": next(self._ids), "uid": uid, "title": body["title"]}
            self.folders[uid]["version"] = 1
            return 200, self.folders[uid]
        if method == "PUT" and len(rest) == 1 and rest[0] in self.folders:
            f = self.folders[rest[0]]
            f.update(title=body["title"], version=f["version"] + 1)
            return 200, f
        return 404, {"message": "not found"}

    def _datasources(self, method: str, rest: list[str], body: dict | None) -> tuple[int, object]:
        if method == "GET" and len(rest) == 2 and rest[0] == "uid":
            ds = self.datasources.get(rest[1])
            return (200, ds) if ds else (404, {"message": "data source not found"})
        if method == "POST" and not rest:
            ds = {**body, "id": next(self._ids)}
            self.datasources[ds["uid"]] = ds
            return 200, {"datasource": ds, "id": ds["id"], "message": "Datasource added"}
        if method == "PUT" and len(rest) == 1:
            for uid, ds in self.datasources.items():
                if str(ds["id"]) == rest[0]:
                    self.datasources[uid] = {**body, "id": ds["id"]}
                    return 200, {"message": "Datasource updated"}
        return 404, {"message": "not found"}

    def _dashboards(self, method: str, rest: list[str], body: dict | None) -> tuple[int, object]:
        if method == "GET" and len(rest) == 2 and rest[0] == "uid":
            d = self.dashboards.get(rest[1])
            if not d:
                return 404, {"message": "Dashboard not found"}
            return 200, {
                "dashboard": copy.deepcopy(d["dashboard"]),
                "meta": {"folderUid": d["folderUid"]},
            }
        if method == "POST" and rest == ["db"]:
            dash = body["dashboard"]
            uid = dash["uid"]
            have = self.dashboards.get(uid)
            if have is not None and self.concurrent_edit:  # someone saved it meanwhile
                self.concurrent_edit = False
                have["dashboard"]["version"] += 1
            stale = have is not None and dash.get("version") != have["dashboard"]["version"]
            if stale and not body.get("overwrite"):
                return 412, {
                    "message": "The dashboard has been changed by someone else",
                    "status": "version-mismatch",
                }
            if have is None and not body.get("overwrite") and dash.get("id") is not None:
                return 404, {"message": "Dashboard not found"}
            if body.get("folderUid") not in self.folders:
                return 400, {"message": "folder not found"}
            version = (have["dashboard"]["version"] + 1) if have else 1
            ident = have["dashboard"]["id"] if have else next(self._ids)
            saved = {**dash, "id": ident, "version": version}
            self.dashboards[uid] = {"dashboard": saved, "folderUid": body["folderUid"]}
            return 200, {"id": ident, "uid": uid, "status": "success", "version": version}
        return 404, {"message": "not found"}

    def saves(self) -> int:
        return sum(1 for m, p in self.calls if m == "POST" and p == "/api/dashboards/db")
