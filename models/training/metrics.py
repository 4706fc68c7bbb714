"""What a training run leaves beside its checkpoints: per-step metrics (JSON lines), a
progress bar, and the loss curve (PNG). Written by rank 0 only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

__all__ = ["MetricsLog", "read_metrics", "plot_loss", "Progress"]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file (an incomplete last line, left by a crash, is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsLog:
    """Appends one JSON object per step to ``path``; on resume, drops records of steps at or
    after ``start`` (they will be run again) so the file reads as one uninterrupted run."""

    def __init__(self, path: str | Path, start: int = 0):
        self.path = Path(path)
        kept = [r for r in read_metrics(self.path) if r.get("step", -1) < start] if self.path.exists() else []
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)
        self._file = self.path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` and flush it to the file."""
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def plot_loss(records: Iterable[dict[str, Any]], png: str | Path, title: str = "training loss") -> Path:
    """Draw loss, reconstruction and sparsity against step (one line per stage) to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        for stage, terms in record.get("stages", {}).items():
            for term in ("loss", "reconstruction", "sparsity"):
                xs, ys = series.setdefault(f"stage {stage} {term}", ([], []))
                xs.append(record["step"])
                ys.append(terms[term])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for label, (xs, ys) in sorted(series.items()):
        style = "-" if label.endswith("loss") else ":"
        ax.plot(xs, ys, style, label=label, linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("objective per image")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png)
    plt.close(fig)
    return png


class Progress:
    """A tqdm bar on rank 0 (loss, samples/s, ETA); nothing on the other ranks or when
    ``enabled`` is False."""

    def __init__(self, total: int, start: int, enabled: bool, desc: str = "train"):
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True)

    def update(self, loss: float, samples_per_s: float, stage: str) -> None:
        """Advance one step and show its figures."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"stage {stage} loss {loss:.4g} {samples_per_s:.1f} samples/s", refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()
