"""Atomic writes: a reader never sees half a file, and a failed write leaves the old one whole."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from tagshift.errors import TagshiftError


def default_mode(directory: bool = False) -> int:
    """The permissions a plain `open` or `mkdir` would give under the current umask
    (mkstemp and mkdtemp make private files, which a saved model should not be)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    with open_atomic(path, encoding) as handle:
        handle.write(text)


@contextmanager
def open_atomic(path: str | Path, encoding: str = "utf-8") -> Iterator[TextIO]:
    """A text file to write a piece at a time (output larger than memory), at a temporary
    path beside `path` that is renamed over it when the block ends without an error; on an
    error (or Ctrl-C) it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(path: str | Path) -> None:
    """Raise, before any work is done, if `path` cannot be written as a file: a directory, a
    path under a file, a directory that does not exist (a typo should not create one), or
    one where no file can be created (read-only, /proc). The last is tried for real, with a
    temporary file of our naming that is removed at once."""
    path = Path(path)
    if path.is_dir():
        raise TagshiftError(f"{path} is a directory; give a file name")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise TagshiftError(f"{path}: {parent} is a file, not a directory")
    if not path.absolute().parent.is_dir():
        raise TagshiftError(f"{path}: its directory {path.parent} does not exist; create it first")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.absolute().parent)
    except OSError as err:
        raise TagshiftError(f"{path}: cannot write there ({err.strerror})") from None
    os.close(fd)
    os.unlink(probe)
