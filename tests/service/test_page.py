"""The page at `/` and its files: served by the app, kept out of the API schema, and shipped as package data so a
non-editable install (and so the Docker image, which installs the wheel) serves them too."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "service" / "static"


def test_the_page_and_every_file_it_references_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    references = set(re.findall(r'(?:src|href)="(/ui/[^"]+)"', page.text))
    assert {"/ui/app.js", "/ui/style.css", "/ui/favicon.svg"} <= references
    for reference in references:
        response = client.get(reference)
        assert response.status_code == 200, reference
        assert response.content == (STATIC / reference.removeprefix("/ui/")).read_bytes()
    assert client.get("/ui/app.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))
    for missing in ("/ui/missing.js", "/ui/index.html", "/ui/..%2Fapp.py", "/ui/%2e%2e"):
        response = client.get(missing)
        assert response.status_code == 404 and response.json()["code"] == "not_found", missing
    registry = client.app.state.labelserve.metrics.registry
    assert registry.get_sample_value("labelserve_requests_total",
                                     {"method": "GET", "route": "/ui/{name}", "status": "200"}) >= 3


def test_the_page_is_open_but_not_part_of_the_api_schema(model_repository: Path) -> None:
    from service.app import create_app
    from service.settings import Settings

    with TestClient(create_app(Settings(model_repository=model_repository, api_key="k"))) as keyed:
        assert keyed.get("/").status_code == 200 and keyed.get("/ui/app.js").status_code == 200
        assert keyed.get("/models").status_code == 401
        paths = keyed.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(path.startswith("/ui") for path in paths)


def test_the_page_uses_no_outside_resource() -> None:
    """No CDN, no framework download: every URL in the page's files is this server's own."""
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        outside = [url for url in re.findall(r"https?://[^\s\"')]+", text) if "www.w3.org/2000/svg" not in url]
        assert not outside, (path.name, outside)


def test_a_built_wheel_carries_the_page(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("labelserve", "labelserve_tools", "service", "training", "export"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(tmp_path / "dist"), str(source)], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("labelserve-*.whl")
    installed = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(installed),
                    str(wheel)], check=True, timeout=300)
    check = ("import service, sys; from starlette.testclient import TestClient; from service.app import create_app;"
             "from service.settings import Settings; assert service.__file__.startswith(sys.argv[1]), service.__file__;"
             "client = TestClient(create_app(Settings(model_repository=sys.argv[1])));"
             "print(client.get('/').status_code, client.get('/ui/app.js').status_code)")
    result = subprocess.run([sys.executable, "-c", check, str(installed)], capture_output=True, text=True, timeout=120,
                            check=False, cwd=tmp_path, env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.split() == ["200", "200"], result.stderr
