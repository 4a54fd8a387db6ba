"""The hostile clients of bench.hostile, each an asyncio routine that keeps attacking until told to stop, then waits
for the server to close what it still holds open, and reports how long each connection lived.

Run in a process of its own (`run_attack`), so its event loop never delays the normal clients being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection as Pipe
from urllib.parse import urlsplit

__all__ = ["ATTACKS", "AttackPlan", "AttackReport", "run_attack"]

ATTACKS = ("slow_headers", "slow_bodies", "idle_sockets", "header_bombs", "aborts")


@dataclass(frozen=True)
class AttackPlan:
    """What one attack does: `connections` at once for `seconds`, each closed by the server within `limit_s`."""

    kind: str
    url: str
    connections: int
    seconds: float
    limit_s: float  # from the moment the offending phase starts; a connection open longer failed the target
    request: bytes = b""  # a real /predict request, whose head and body the body attacks send


@dataclass
class AttackReport:
    """What the attack saw: connections opened, how long the server let each live, bytes a bomb got through."""

    kind: str
    opened: int = 0
    lifetimes_s: list[float] = field(default_factory=list)  # offending phase start -> closed by the server
    still_open: int = 0  # not closed by the server within limit + margin after the attack stopped
    answers: dict[str, int] = field(default_factory=dict)  # status codes the server sent the attackers
    error: str = ""

    @property
    def max_lifetime_s(self) -> float:
        """The longest a hostile connection lived."""
        return max(self.lifetimes_s, default=0.0)


class _Attack:
    def __init__(self, plan: AttackPlan) -> None:
        self.plan = plan
        self.report = AttackReport(plan.kind)
        parts = urlsplit(plan.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.stop_at = 0.0

    @property
    def attacking(self) -> bool:
        return time.monotonic() < self.stop_at

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        self.report.opened += 1
        return reader, writer

    async def closed_by_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               trickle: bytes = b"", interval_s: float = 1.0) -> float | None:
        """Write `trickle` every `interval_s` (nothing if empty) until the server closes; the time it closed, or None
        after limit + margin past the end of the attack."""
        give_up = self.stop_at + self.plan.limit_s + 5.0
        received = b""
        while time.monotonic() < give_up:
            try:
                if trickle:
                    writer.write(trickle)
                chunk = await asyncio.wait_for(reader.read(65536), interval_s)
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic()
            if not chunk:
                self.count_answer(received)
                return time.monotonic()
            received += chunk[:64]
        self.report.still_open += 1
        return None

    def count_answer(self, received: bytes) -> None:
        status = received.split(b" ", 2)[1].decode(errors="replace") if received.startswith(b"HTTP/") else "none"
        self.report.answers[status] = self.report.answers.get(status, 0) + 1

    def lived(self, started: float, closed: float | None) -> None:
        if closed is not None:
            self.report.lifetimes_s.append(closed - started)

    async def persistently(self, one: Callable[[], Awaitable[None]]) -> None:
        """Run `one` connection after another while the attack lasts (an attacker reconnects when closed)."""
        while self.attacking:
            try:
                await one()
            except OSError:
                await asyncio.sleep(0.1)  # refused or reset before a byte went out: try again, gently


async def _slow_headers(attack: _Attack) -> None:
    """A head that never ends: one more header byte a second."""

    async def one() -> None:
        reader, writer = await attack.connect()
        started = time.monotonic()
        writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        attack.lived(started, await attack.closed_by_server(reader, writer, b"X"))
        writer.close()

    await asyncio.gather(*(attack.persistently(one) for _ in range(attack.plan.connections)))


async def _slow_bodies(attack: _Attack) -> None:
    """A real /predict request whose body arrives at 1 byte/s."""
    head_end = attack.plan.request.index(b"\r\n\r\n") + 4

    async def one() -> None:
        reader, writer = await attack.connect()
        writer.write(attack.plan.request[:head_end])
        started = time.monotonic()
        attack.lived(started, await attack.closed_by_server(reader, writer, b"-"))
        writer.close()

    await asyncio.gather(*(attack.persistently(one) for _ in range(attack.plan.connections)))


async def _idle_sockets(attack: _Attack) -> None:
    """Sockets that connect and never send a byte (opened once: each lives until the server closes it)."""

    async def one() -> None:
        try:
            reader, writer = await attack.connect()
        except OSError:
            return
        started = time.monotonic()
        attack.lived(started, await attack.closed_by_server(reader, writer))
        writer.close()

    await asyncio.gather(*(one() for _ in range(attack.plan.connections)))


async def _header_bombs(attack: _Attack) -> None:
    """A header that never ends, written as fast as the server takes it (up to 8 MiB a connection); the lifetime is
    until the server's answer arrives, after which it reads nothing more of the head."""
    bomb = b"a" * 65536

    async def one() -> None:
        reader, writer = await attack.connect()
        started = time.monotonic()
        answer = asyncio.ensure_future(reader.read(65536))
        with contextlib.suppress(OSError):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bomb: ")
            for _ in range(128):
                if answer.done():
                    break
                writer.write(bomb)
                await writer.drain()
        try:
            received = await asyncio.wait_for(answer, attack.plan.limit_s + 5.0)
            attack.lived(started, time.monotonic())
            attack.count_answer(received)
        except TimeoutError:
            attack.report.still_open += 1
        except OSError:
            attack.lived(started, time.monotonic())
        writer.close()
        await asyncio.sleep(0.05)

    await asyncio.gather(*(attack.persistently(one) for _ in range(attack.plan.connections)))


async def _aborts(attack: _Attack) -> None:
    """Half a request body, then a reset (SO_LINGER 0): a client that goes away mid-upload."""
    half = len(attack.plan.request) // 2

    async def one() -> None:
        _reader, writer = await attack.connect()
        writer.write(attack.plan.request[:half])
        await writer.drain()
        await asyncio.sleep(0.2)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    await asyncio.gather(*(attack.persistently(one) for _ in range(attack.plan.connections)))


_ROUTINES: dict[str, Callable[[_Attack], Awaitable[None]]] = {
    "slow_headers": _slow_headers, "slow_bodies": _slow_bodies, "idle_sockets": _idle_sockets,
    "header_bombs": _header_bombs, "aborts": _aborts}


async def _run(plan: AttackPlan, started: Pipe) -> AttackReport:
    attack = _Attack(plan)
    attack.stop_at = time.monotonic() + plan.seconds
    started.send("started")
    await _ROUTINES[plan.kind](attack)
    return attack.report


def run_attack(plan: AttackPlan, pipe: Pipe) -> None:
    """Process entry: attack for `plan.seconds`, wait for the server to close what is left, send the report."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 2,000 sockets need more than 1,024 descriptors
    try:
        report = asyncio.run(_run(plan, pipe))
    except Exception as exc:  # the report says what broke; the benchmark fails its targets on it
        report = AttackReport(plan.kind, error=f"{type(exc).__name__}: {exc}")
    pipe.send(asdict(report))
    pipe.close()
