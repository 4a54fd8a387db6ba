"""The uvicorn configuration every server process runs with, single or one of several workers.

One definition, so `python -m service`, `labelserve serve` and each worker of `LABELSERVE_WORKERS` run on the same
event loop and HTTP parser, write one log line per request (the service's own, `service.observability`; uvicorn's
access log stays off) and drain for the same time on SIGTERM.
"""

from __future__ import annotations

import functools
import signal
from importlib.util import find_spec
from types import FrameType

import uvicorn
from fastapi import FastAPI

from service.http import ConnectionLimits, ConnectionTable, GuardedHttpToolsProtocol
from service.settings import Settings

__all__ = ["event_loop_and_parser", "return_after_drain", "uvicorn_config"]


def event_loop_and_parser() -> tuple[str, str]:
    """uvloop where installed (the serve extra: less CPU per request than asyncio) and httptools, named explicitly so
    the log says what runs instead of uvicorn choosing silently."""
    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    return loop, "httptools (service.http: a time limit on every phase of a connection)"


def uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """How uvicorn serves `app`: logging left to `configure_logging`, no access log, graceful drain on SIGTERM, no
    WebSocket upgrades, and every connection through `service.http` (time limits per phase, head limits, a cap on
    connections, JSON errors). Idle connections are kept `keep_alive_s` (uvicorn's own 5 s closed connections that
    slow clients were about to reuse: under overload a client that took longer than that to send its next request
    got a reset, not an answer).
    """
    loop, _http = event_loop_and_parser()
    table = ConnectionTable(ConnectionLimits.from_settings(settings), observer=app.state.labelserve.metrics)
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                          log_level=settings.log_level.lower(), access_log=False, loop=loop,
                          http=functools.partial(GuardedHttpToolsProtocol, table=table), ws="none",
                          timeout_graceful_shutdown=settings.drain_timeout_s,
                          timeout_keep_alive=max(1, round(settings.keep_alive_s)))


def _drained(_signum: int, _frame: FrameType | None) -> None:
    """Nothing left to do: uvicorn has drained by the time it raises the signal again."""


def return_after_drain() -> None:
    """Make a SIGTERM or SIGINT stop end with `run()` returning, so the process exits with code 0.

    uvicorn drains on these signals, then raises the signal again for the handler that was installed before it
    started; the default handlers would turn a drained stop into a kill (-15) or a KeyboardInterrupt traceback, which
    orchestrators read as a failure.
    """
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _drained)
