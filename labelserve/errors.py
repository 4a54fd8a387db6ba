"""The mistakes a user can make and fix, one class per kind, each with the `labelserve` exit code it ends with.

Raised where the mistake is found (config loading, dataset readers, export), caught only by the CLI, which prints
the message as one line and exits with the kind's code; anything else is a bug and keeps its traceback (`--debug`).
Each class also derives from the builtin exception that code catching the old errors expects (ValueError).
NumPy-free and torch-free, so every package may import it.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["EXIT_CODES", "ConfigError", "DataError", "ExportError", "ServingError", "UserError"]


class UserError(Exception):
    """A mistake the user can fix: the message says, in one line, what was wrong and how to fix it."""

    exit_code: ClassVar[int] = 1


class ConfigError(UserError, ValueError):
    """A command-line argument or a training config key or value is wrong (exit code 2, argparse's own)."""

    exit_code = 2


class ServingError(UserError, ValueError):
    """The model repository cannot be served or measured as asked (exit code 3)."""

    exit_code = 3


class DataError(UserError, ValueError):
    """The dataset cannot be trained on: annotation file, format, images or labels (exit code 4)."""

    exit_code = 4


class ExportError(UserError, ValueError):
    """A checkpoint cannot be read or exported: not a checkpoint, no parity images, parity failed (exit code 5)."""

    exit_code = 5


# What `labelserve --help` lists; 0 is success and 1 an unexpected error (a bug: `--debug` shows the traceback).
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "an error of the system (permission, disk full) or an unexpected one (--debug shows its traceback); predict: "
       "the server answered with an error",
    2: "a wrong command-line argument, or a wrong training config key or value",
    3: "the model repository cannot be served, or tune found no setting within --latency-budget-ms",
    4: "the dataset: annotation file, format, a missing or broken image, an unknown label (labelserve data check)",
    5: "the checkpoint or its export: not a checkpoint, no parity images, parity check failed",
    130: "interrupted (Ctrl-C)",
}
