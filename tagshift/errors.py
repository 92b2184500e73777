"""Errors a user can act on. The CLI prints them as one line, without a traceback."""

from __future__ import annotations

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
