"""Progress bars for long work (tqdm on stderr); off when not asked for, e.g. in tests."""

from __future__ import annotations

from typing import Any, Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(items: Iterable[T], description: str, enabled: bool = True, **options: Any) -> tqdm:
    """`items`, iterated under a bar named `description` when `enabled`."""
    return tqdm(items, desc=description, disable=not enabled, dynamic_ncols=True, leave=False, **options)
