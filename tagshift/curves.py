"""Learning curves: training loss and dev F1 per epoch, as a PNG beside the model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from tagshift.atomic import default_mode


def plot_learning_curves(history: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Loss (left axis) and dev entity F1 (right axis) against epoch; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=100)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        plt.close(figure)
        Path(tmp).unlink(missing_ok=True)
