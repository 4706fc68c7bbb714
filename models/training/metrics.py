"""What a training run leaves beside its checkpoints: per-step metrics (JSON lines), a
progress bar, the loss curve and the run's other curves (PNG, redrawn at every checkpoint
and whenever a run stops), and optionally TensorBoard events. Written by rank 0 only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from ..extras import pyplot

__all__ = ["MetricsLog", "read_metrics", "plot_loss", "plot_curves", "refresh_plots", "Progress", "TensorBoardLog"]


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
        self._also: list[Any] = []

    def also(self, writer: Any) -> None:
        """Give every record to ``writer`` too (its ``write`` and ``close``: TensorBoard)."""
        self._also.append(writer)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` and flush it to the file."""
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for writer in self._also:
            writer.write(record)

    def close(self) -> None:
        """Close the file."""
        self._file.close()
        for writer in self._also:
            writer.close()


def _pyplot() -> Any:
    return pyplot("loss.png and curves.png")


def plot_loss(records: Iterable[dict[str, Any]], png: str | Path, title: str = "training loss") -> Path:
    """Draw loss, reconstruction and sparsity against step (one line per stage) to ``png``."""
    plt = _pyplot()

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


def _series(records: list[dict[str, Any]], pick: Any) -> tuple[list[int], list[float]]:
    """(steps, values) of the records where ``pick(record)`` is a number."""
    xs, ys = [], []
    for r in records:
        try:
            v = pick(r)
        except (KeyError, TypeError, ZeroDivisionError):
            continue
        if isinstance(v, (int, float)):
            xs.append(r["step"])
            ys.append(v)
    return xs, ys


def _smooth(xs: list[int], ys: list[float], window: int) -> tuple[list[int], list[float]]:
    """The moving mean of ``ys`` over ``window`` points (at the window's last step)."""
    if window <= 1 or len(ys) < window:
        return xs, ys
    import numpy as np

    means = np.convolve(np.asarray(ys, float), np.ones(window) / window, mode="valid")
    return xs[window - 1:], means.tolist()


def plot_curves(records: list[dict[str, Any]], png: str | Path, title: str = "training") -> Path:
    """Draw the run's other curves to ``png``: the held-out objective and its reconstruction
    term against the training objective per stage, weight and gradient norms per stage, the
    learning rate, samples/s, and the shares of a step spent waiting for data, communicating
    and computing."""
    plt = _pyplot()
    stages = sorted({s for r in records for s in r.get("stages", {})}, key=int)
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), dpi=100)
    (held, norms, grads), (lr, speed, shares) = axes
    for s in stages:
        held.plot(*_series(records, lambda r: r["stages"][s]["loss"]), "-", lw=1, label=f"stage {s} training")
        held.plot(*_series(records, lambda r: r["heldout"][s]["loss"]), "o--", ms=3, lw=1, label=f"stage {s} held-out")
        held.plot(*_series(records, lambda r: r["heldout"][s]["reconstruction"]), "x:", ms=3, lw=1,
                  label=f"stage {s} held-out reconstruction")
        norms.plot(*_series(records, lambda r: r["norms"][s]["weight"]), "-", lw=1.2, label=f"stage {s}")
        grads.plot(*_series(records, lambda r: r["norms"][s]["grad"]), "-", lw=1, label=f"stage {s}")
    lr.plot(*_series(records, lambda r: r["lr"]), "-", lw=1.2)
    window = max(1, len(records) // 100)  # noisy per-step timings: a moving mean over this many records
    speed.plot(*_smooth(*_series(records, lambda r: r["samples_per_s"]), window), "-", lw=1)
    for part in ("data", "comm", "compute"):
        shares.plot(*_smooth(*_series(records, lambda r: r["seconds"][part] / r["seconds"]["step"]), window), "-",
                    lw=1, label=part)
    mean = f" (moving mean of {window})" if window > 1 else ""
    for ax, name, log in [(held, "objective per image", True), (norms, "weight norm", False),
                          (grads, "gradient norm", True), (lr, "learning rate", False),
                          (speed, "samples / s" + mean, False), (shares, "share of the step" + mean, False)]:
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if log and any(line.get_ydata().size and min(line.get_ydata()) > 0 for line in ax.get_lines()):
            ax.set_yscale("log")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    shares.set_ylim(0, 1)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png)
    plt.close(fig)
    return png


def refresh_plots(run_dir: str | Path) -> None:
    """Redraw ``run_dir``'s loss.png and curves.png from its metrics.jsonl (rank 0)."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    if not records:
        return
    for draw, name in ((plot_loss, "loss.png"), (plot_curves, "curves.png")):
        tmp = run_dir / f".{name}.tmp.png"
        draw(records, tmp, title=f"{run_dir.name}: " + ("objective per image" if name == "loss.png" else "run"))
        os.replace(tmp, run_dir / name)


class TensorBoardLog:
    """The metrics records as TensorBoard scalars in ``RUN/tensorboard/`` (``train.tensorboard
    = true``; needs tensorboardX: ``pip install 'cots-hpc[tensorboard]'``)."""

    def __init__(self, folder: str | Path):
        self._writer = self.check().SummaryWriter(str(folder))

    @staticmethod
    def check() -> Any:
        """The tensorboardX module; ValueError naming the extra when it is not installed."""
        try:
            import tensorboardX
        except ImportError:
            raise ValueError("train.tensorboard = true needs tensorboardX: pip install 'cots-hpc[tensorboard]' "
                             "(or set train.tensorboard = false)") from None
        return tensorboardX

    def write(self, record: dict[str, Any]) -> None:
        """Add every number of ``record`` as a scalar at its step (nested keys joined by /)."""
        step = record["step"]

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}/{k}" if prefix else str(k), v)
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and prefix not in ("step", "time"):
                self._writer.add_scalar(prefix, value, step, walltime=record.get("time"))

        walk("", record)
        self._writer.flush()

    def close(self) -> None:
        """Close the event file."""
        self._writer.close()


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
