"""Errors a user can act on. The CLI prints them as one line, without a traceback."""

from __future__ import annotations

import reprlib
from pathlib import Path


class TagshiftError(ValueError):
    """Bad input or options: the message names what was wrong, where, and the fix."""


class CorpusError(TagshiftError):
    """A corpus file that cannot be read as written."""


class SchemeError(TagshiftError):
    """A tag or tag sequence that does not fit a tagging scheme."""


class LabelMapError(TagshiftError):
    """A label map that is malformed or names labels that do not exist."""


class BundleError(TagshiftError):
    """A model directory that cannot be loaded as it is."""


class AlignmentError(TagshiftError):
    """Two corpora that should hold the same sentences do not."""


def where(path: str | Path | None, line: int | None) -> str:
    """`file:line: ` prefix for messages; empty parts are left out."""
    if path is None:
        return ""
    return f"{path}:{line}: " if line is not None else f"{path}: "


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict, _SHORT_REPR.maxstring = 2, 4, 4, 40


def quoted(value: object, limit: int = 80) -> str:
    """`value` as a message quotes it: repr'd, so it stays on one line, and cut to about
    `limit` characters, so a 10 MB line does not become a 10 MB message.

    >>> quoted("B-PER")
    "'B-PER'"
    >>> quoted("x" * 100_000, limit=5)
    "'xxxxx'… (100,000 characters)"
    >>> quoted("a\\u2028b")
    "'a\\\\u2028b'"
    >>> quoted(list(range(100)))
    '[0, 1, 2, 3, ...]'
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    # reprlib elides inside containers without building the whole repr first
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


def requoted(message: str, value: str, limit: int = 80) -> str:
    """`message` from a lower layer that quotes `value` whole as '{value}', with that quote
    cut as `quoted` cuts it (the layer below knows the value, not the file it came from).

    >>> requoted("'" + "B-" * 50 + "' is not a tag", "B-" * 50, limit=4)
    "'B-B-'… (100 characters) is not a tag"
    """
    return message.replace(f"'{value}'", quoted(value, limit))
