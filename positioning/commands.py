"""Sub-commands that run the components: origin, worker, edge, up/down, produce, story, bench."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the component sub-commands to the ``positioning`` parser."""
