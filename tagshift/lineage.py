"""Where a model came from: one record per step (train, adapt, ...), kept in `lineage.json`."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from tagshift.corpus import Corpus
from tagshift.version import __version__


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_sha256(corpus: Corpus) -> str:
    """A hash of the sentences themselves (tokens and tags), which tells two slices of one
    file apart where the file's hash cannot."""
    digest = hashlib.sha256()
    for sentence in corpus.sentences:
        digest.update(json.dumps([sentence.tokens, sentence.tags], ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def corpus_record(corpus: Corpus) -> dict[str, Any]:
    """A corpus as the lineage names it: file and its hash, the sentences used and theirs."""
    record: dict[str, Any] = {
        "path": str(corpus.path) if corpus.path else None,
        "sentences": len(corpus),
        "tokens": sum(len(s) for s in corpus.sentences),
        "content_sha256": content_sha256(corpus),
    }
    if corpus.path and Path(corpus.path).is_file():
        record["sha256"] = file_sha256(corpus.path)
    return record


def state_sha256(state: dict[str, Any]) -> str:
    """A digest of a state dict's tensors, names and values (weights held in memory)."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def step_record(step: str, **details: Any) -> dict[str, Any]:
    """One lineage entry: what was done, when, by which tagshift and command."""
    return {
        "step": step,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tagshift": __version__,
        "command": details.pop("command", None) or "(library call)",
        **details,
    }


def machine_record(device: torch.device) -> dict[str, Any]:
    """Where a step computed (a lineage entry's `ran_on`): without it, the `seconds` a step
    took cannot be compared."""
    record: dict[str, Any] = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        # the cores this process may use (a container's share), not the host's
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": f"{platform.machine()}, {platform.system()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record
