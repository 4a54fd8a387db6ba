"""Canary routing: a steady share of clients, the same ones every time, told apart by a header or their address."""

from __future__ import annotations

from service.canary import client_key, in_canary


def test_the_same_client_always_gets_the_same_answer_and_the_share_is_the_weight() -> None:
    keys = [f"client-{i}" for i in range(20_000)]
    chosen = [in_canary(key, 0.1) for key in keys]
    assert chosen == [in_canary(key, 0.1) for key in keys]
    assert 0.09 < sum(chosen) / len(keys) < 0.11
    # raising the weight only adds clients to the canary, it never moves one back
    assert all(in_canary(key, 0.3) for key, was in zip(keys, chosen, strict=True) if was)
    assert not any(in_canary(key, 0.0) for key in keys) and all(in_canary(key, 1.0) for key in keys)


def test_the_key_is_the_header_else_the_address() -> None:
    scope = {"headers": [(b"x-client-key", b"tenant-7")], "client": ("10.0.0.5", 51234)}
    assert client_key(scope, "X-Client-Key") == "tenant-7"
    assert client_key(scope, "X-Tenant") == "10.0.0.5"
    assert client_key({"headers": []}, "X-Client-Key") == ""
