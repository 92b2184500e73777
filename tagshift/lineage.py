"""Where a model came from: one record per step (train, adapt, ...), kept in `lineage.json`."""

from __future__ import annotations

import hashlib
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tagshift import __version__
from tagshift.corpus import Corpus


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def corpus_record(corpus: Corpus) -> dict[str, Any]:
    """A corpus as the lineage names it: file, hash, size."""
    record: dict[str, Any] = {
        "path": str(corpus.path) if corpus.path else None,
        "sentences": len(corpus),
        "tokens": sum(len(s) for s in corpus.sentences),
    }
    if corpus.path and Path(corpus.path).is_file():
        record["sha256"] = file_sha256(corpus.path)
    return record


def step_record(step: str, **details: Any) -> dict[str, Any]:
    """One lineage entry: what was done, when, by which tagshift and command."""
    return {
        "step": step,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tagshift": __version__,
        "command": details.pop("command", None) or " ".join(["tagshift", *sys.argv[1:]]),
        **details,
    }
