"""The top floor: the `labelserve` CLI and the offline tools it runs (tune, load generation, local servers).

Nothing in `labelserve` (the shared core), `training`, `export` or `service` imports this package; it may import all
of them, and does so inside each command, so `labelserve serve` never loads torch (docs/architecture.md).
"""
