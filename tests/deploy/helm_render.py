"""Render a Helm chart with real Helm and print the objects it would create, as JSON.

    .venv-helm/bin/python tests/deploy/helm_render.py k8s/labelserve values.json > objects.json

Runs under the Python 3.12 environment that holds `helm-sdkpy` (Helm's Go library behind a C API; it has no
`template` action). So this script runs `helm install` against a small fake Kubernetes API server that answers
discovery, knows no existing objects, and records every object Helm creates: what comes back is exactly what
Helm's template engine rendered, after its own values-schema validation. Standard library only besides helm-sdkpy.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import helm_sdkpy

_VERBS = ["create", "get", "list", "delete", "update", "patch", "watch"]
# group/version -> [(plural, kind, namespaced)]
_RESOURCES = {
    "v1": [("configmaps", "ConfigMap", True), ("secrets", "Secret", True), ("services", "Service", True),
           ("persistentvolumeclaims", "PersistentVolumeClaim", True), ("namespaces", "Namespace", False)],
    "apps/v1": [("deployments", "Deployment", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor", True)],
}


def _resource_list(group_version: str) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [{"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                           "verbs": _VERBS} for plural, kind, namespaced in _RESOURCES[group_version]]}


def _group_list() -> dict[str, Any]:
    groups = {}
    for group_version in _RESOURCES:
        if "/" in group_version:
            group, version = group_version.split("/")
            groups.setdefault(group, []).append({"groupVersion": group_version, "version": version})
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{"name": name, "versions": versions, "preferredVersion": versions[0]}
                       for name, versions in groups.items()]}


class _FakeApiServer(BaseHTTPRequestHandler):
    created: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *_args: Any) -> None:
        """Quiet: the objects are the output."""

    def _json(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/version":
            self._json(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0"})
        elif path == "/api":
            self._json(200, {"kind": "APIVersions", "versions": ["v1"]})
        elif path == "/apis":
            self._json(200, _group_list())
        elif path == "/api/v1":
            self._json(200, _resource_list("v1"))
        elif path.startswith("/apis/") and path.count("/") == 3 and path[len("/apis/"):] in _RESOURCES:
            self._json(200, _resource_list(path[len("/apis/"):]))
        elif "labelSelector" in query:
            self._json(200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []})
        else:
            self._json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                             "code": 404})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") == "chunked":
            data = b""
            while (size := int(self.rfile.readline().strip(), 16)) != 0:
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _echo(self, status: int) -> None:
        data = self._body()
        content_type = self.headers.get("Content-Type", "application/json")
        if "json" in content_type and not self.path.split("?")[0].endswith(("/secrets", "/namespaces")):
            self.created.append(json.loads(data))
        self.send_response(status)  # Helm's own release record (a protobuf Secret) is echoed back unread
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self._echo(201)

    def do_PUT(self) -> None:
        self._echo(200)


def render(chart: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects `helm install` creates for `chart` with `values`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = (  # YAML text: helm-sdkpy tells a kubeconfig string from a file path by its YAML keys
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{server.server_address[1]}'}}}}]\n"
        "users: [{name: fake, user: {token: fake}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: default}}]\n"
    )
    try:
        config = helm_sdkpy.Configuration(namespace="default", kubeconfig=kubeconfig)
        asyncio.run(helm_sdkpy.Install(config).run("labelserve", chart, values=values, wait=False, timeout=60))
    finally:
        server.shutdown()
    return _FakeApiServer.created


if __name__ == "__main__":
    with open(sys.argv[2], encoding="utf-8") as handle:
        sys.stdout.write(json.dumps(render(sys.argv[1], json.load(handle))) + "\n")
