"""Pictures, written as PNG atomically: learning curves (training loss and dev F1 per epoch,
beside the model) and the per-type before/after chart of a comparison."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagshift.atomic import default_mode

if TYPE_CHECKING:
    from tagshift.metrics import Comparison


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib import pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> None:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=100)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        plt.close(figure)
        Path(tmp).unlink(missing_ok=True)


def plot_learning_curves(history: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Loss (left axis) and dev entity F1 (right axis) against epoch."""
    plt = _pyplot()
    path = Path(path)
    epochs = [h["epoch"] for h in history]
    figure, loss_axis = plt.subplots(figsize=(6, 3.5))
    loss_axis.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    dev = [(h["epoch"], 100 * h["dev_f1"]) for h in history if h.get("dev_f1") is not None]
    if dev:
        f1_axis = loss_axis.twinx()
        f1_axis.plot(*zip(*dev), "s-", color="tab:orange", label="dev F1")
        f1_axis.set_ylabel("dev entity F1, conlleval (%)", color="tab:orange")
        best = max(dev, key=lambda point: point[1])
        f1_axis.annotate(f"best {best[1]:.1f}", best, textcoords="offset points", xytext=(0, -14), ha="center")
    loss_axis.set_title(title or "learning curves")
    figure.tight_layout()
    _save(figure, path)


def plot_comparison(comparison: Comparison, path: str | Path, title: str = "") -> None:
    """Per type, the baseline's and the system's F1 side by side, with the delta written
    above each pair; old and new types (the comparison's groups) in that order."""
    plt = _pyplot()
    path = Path(path)
    data = comparison.to_json()
    rows = sorted(data["per_type"].items(), key=lambda item: (item[1]["group"] != "old", item[1]["group"], item[0]))
    names = [f"{t}\n({row['group']})" if row["group"] else t for t, row in rows]
    baseline = [100 * row["baseline_f1"] for _, row in rows]
    system = [100 * row["system_f1"] for _, row in rows]
    figure, axis = plt.subplots(figsize=(max(5, 0.9 * len(rows) + 2), 4))
    positions = range(len(rows))
    axis.bar([p - 0.2 for p in positions], baseline, width=0.4, label="baseline (before)", color="tab:gray")
    axis.bar([p + 0.2 for p in positions], system, width=0.4, label="system (after)", color="tab:blue")
    for p, before, after in zip(positions, baseline, system):
        axis.annotate(f"{after - before:+.1f}", (p, max(before, after)), textcoords="offset points",
                      xytext=(0, 3), ha="center", fontsize=8)
    axis.set_xticks(list(positions), names, fontsize=8)
    axis.set_ylabel(f"entity F1, {comparison.system.mode} (%)")
    axis.set_ylim(0, 110)
    axis.legend(loc="upper right", fontsize=8)
    axis.set_title(title or "per-type F1, before and after")
    figure.tight_layout()
    _save(figure, path)
