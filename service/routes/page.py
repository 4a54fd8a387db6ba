"""The page at `/`: try the models in a browser. Static files shipped inside the package (service/static), no build
step; open like /docs, since the page itself holds no data and sends the API key its user types.

Its files are served by one route over a fixed list (no mount, no path from the request reaches the file system), so
they are counted under the route label `/ui/{name}` like every other route.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

__all__ = ["router"]

_STATIC = files("service") / "static"
_PAGE = "index.html"
_FILES = frozenset(entry.name for entry in _STATIC.iterdir() if entry.is_file() and entry.name != _PAGE)
_NO_CACHE = {"Cache-Control": "no-cache"}  # revalidate (ETag), so a new release's page is never stale

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    """The page; its scripts, styles and icon are under /ui/."""
    return FileResponse(str(_STATIC / _PAGE), headers=_NO_CACHE)


@router.get("/ui/{name}")
async def page_file(name: str) -> FileResponse:
    """One of the page's files."""
    if name not in _FILES:
        raise HTTPException(status_code=404, detail=f"the page has no file {name!r}")
    return FileResponse(str(_STATIC / name), headers=_NO_CACHE)
