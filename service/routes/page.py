"""The page at `/`: try the models in a browser. Static files shipped inside the package (service/static), no build
step; open like /docs, since the page itself holds no data and sends the API key its user types."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC_URL", "router", "static_files"]

STATIC_URL = "/ui"
_STATIC = files("service") / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    """The page (its scripts and styles are under /ui)."""
    return FileResponse(str(_STATIC / "index.html"), headers={"Cache-Control": "no-cache"})


def static_files() -> StaticFiles:
    """The page's scripts, styles and icon, from the installed package."""
    return StaticFiles(packages=[("service", "static")])
