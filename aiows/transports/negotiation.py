"""Subprotocol negotiation, written once for every front-end: the client's first offer that the server has.

Interpreted on purpose: ``websockets`` binds its ``select_subprotocol`` hook
to the protocol as a method, which only a Python function can be.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

__all__ = ["choose_subprotocol", "subprotocol_selector"]


def choose_subprotocol(offered: Iterable[str], available: Iterable[str]) -> str | None:
    """The first subprotocol the client offered that the server has (the client lists its preferred first)."""
    known = set(available)
    for subprotocol in offered:
        if subprotocol in known:
            return subprotocol
    return None


def subprotocol_selector(
    available: Sequence[str],
) -> Callable[[ServerProtocol, Sequence[Subprotocol]], Subprotocol | None]:
    """``ServerProtocol``'s ``select_subprotocol`` hook for ``available``: no subprotocol (never an HTTP 400) when
    the client offers none of them."""

    def select(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        chosen = choose_subprotocol(offered, available)
        return None if chosen is None else Subprotocol(chosen)

    return select
