"""The gRPC server runs on grpc's iomgr poller unless the operator chose otherwise: service.oip_grpc sets
GRPC_EXPERIMENTS before grpc starts (measured cheaper per call: service/oip_grpc/__init__.py), and leaves an
operator's own value, even an empty one, alone. Each case in a fresh interpreter, since grpc reads it once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.oip_grpc import LEGACY_POLLER_EXPERIMENTS

_PROBE = ("import os, service.oip_grpc, grpc; "
          "server = grpc.aio.server(); server.add_insecure_port('127.0.0.1:0'); "
          "print(os.environ['GRPC_EXPERIMENTS'])")


def _experiments_seen(preset: str | None) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    if preset is not None:
        env["GRPC_EXPERIMENTS"] = preset
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60,
                          check=True)
    return done.stdout.strip(), done.stderr


def test_the_legacy_poller_is_the_default_and_grpc_accepts_it() -> None:
    seen, log = _experiments_seen(None)
    assert seen == LEGACY_POLLER_EXPERIMENTS
    assert "experiment" not in log.lower(), log  # grpc complains about experiment names it does not know


@pytest.mark.parametrize("preset", ["", "event_engine_listener"])
def test_an_operators_choice_wins(preset: str) -> None:
    assert _experiments_seen(preset)[0] == preset
