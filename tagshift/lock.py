"""One writer per output: a lock file beside the output directory, holding the writer's pid
and host, taken before any check or work and released when the writer ends. A lock whose
process is gone (killed, crashed) is stale and is taken over."""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tagshift.errors import TagshiftError


class LockedError(TagshiftError):
    """Another live process is writing the same output."""


def lock_path(out: Path) -> Path:
    """`models/ner` -> `models/.ner.lock` (beside it: the directory itself is swapped whole on save)."""
    return out.parent / f".{out.name}.lock"


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the process that wrote the lock still runs. A lock from another host cannot be
    checked from here, so it counts as alive."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # it exists, owned by someone else
        return True
    return True


def _holder(path: Path) -> dict[str, Any] | None:
    """The lock's content; None when it cannot be read (a writer killed mid-write: stale)."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


@contextmanager
def output_lock(out: str | Path, command: str = "tagshift") -> Iterator[None]:
    """Hold the lock on `out` for the duration; a second writer gets a one-line error naming
    the holder. The lock file is created atomically (O_EXCL), so two writers that start
    together cannot both take it."""
    out = Path(out)
    path = lock_path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TagshiftError(f"{out}: cannot create its directory {path.parent} ({err.strerror})") from None
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": time.time()}
    for _ in range(2):  # once more after taking over a stale lock
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is not None and _alive(holder):
                since = time.strftime("%Y-%m-%d %H:%M", time.localtime(holder.get("started", 0)))
                raise LockedError(
                    f"{out} is being written by another run (pid {holder['pid']} on {holder.get('host')}, since {since}: "
                    f"{holder.get('command', '?')}); wait for it to end, or choose another output "
                    f"(if that process is gone, remove {path})"
                ) from None
            path.unlink(missing_ok=True)  # stale: its writer is gone
            continue
        except OSError as err:
            raise TagshiftError(f"{out}: cannot write there ({err.strerror}: {path})") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(mine, handle)
        break
    else:
        raise LockedError(f"{out}: another run took the lock at the same moment; try again")
    try:
        yield
    finally:
        if _holder(path) == mine:  # never remove a lock another process took over
            path.unlink(missing_ok=True)
