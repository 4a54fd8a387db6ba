"""Head registry: every head family registers under a name, and `create_model` builds backbone + head by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

__all__ = ["get_head", "list_heads", "register_head"]

_HEADS: dict[str, type[nn.Module]] = {}
HeadT = TypeVar("HeadT", bound=type[nn.Module])


def register_head(name: str) -> Callable[[HeadT], HeadT]:
    """Class decorator that makes a head constructible by name."""

    def decorate(cls: HeadT) -> HeadT:
        if name in _HEADS:
            raise ValueError(f"head {name!r} is registered twice ({_HEADS[name].__qualname__} and {cls.__qualname__})")
        _HEADS[name] = cls
        return cls

    return decorate


def get_head(name: str) -> type[nn.Module]:
    """The head class registered under `name`."""
    try:
        return _HEADS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; registered heads: {', '.join(sorted(_HEADS))}") from None


def list_heads() -> list[str]:
    """Names of all registered heads."""
    return sorted(_HEADS)

