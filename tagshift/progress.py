"""Progress bars for long work (tqdm on stderr); off when not asked for, e.g. in tests."""

from __future__ import annotations

import sys
from typing import Any, Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(items: Iterable[T], description: str, enabled: bool = True, **options: Any) -> tqdm:
    """`items`, iterated under a bar named `description` when `enabled`."""
    # In a log file (CI, nohup) every redraw is a new line: redraw less often there.
    interval = 0.1 if sys.stderr.isatty() else 10.0
    return tqdm(items, desc=description, disable=not enabled, dynamic_ncols=True, leave=False, mininterval=interval, **options)
