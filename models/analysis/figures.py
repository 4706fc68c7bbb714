"""PNG figures of the neuron analysis (`cots neurons`): image montages, activation histograms
of two classes, and curves against a step. Plain NumPy in, one PNG out; no MPI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..extras import pyplot

__all__ = ["tile_to_unit", "save_montage", "save_histogram", "save_curves"]

DPI = 110
SCALES = ("each", "symmetric")


def tile_to_unit(tile: np.ndarray, scale: str) -> np.ndarray:
    """Map one tile linearly to [0, 1] for display.

    Parameters
    ----------
    tile : np.ndarray
        Any shape, finite values.
    scale : {"each", "symmetric"}
        ``"each"``: the tile's min goes to 0 and its max to 1. ``"symmetric"``: 0 goes to 0.5
        and the tile's largest ``|value|`` to 0 or 1 (for filters and stimuli, whose sign
        matters). A constant tile (``"each"``) or an all-zero tile (``"symmetric"``) is 0.5.

    Returns
    -------
    np.ndarray
        float64, same shape as ``tile``, values in [0, 1].
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    t = np.asarray(tile, dtype=np.float64)
    if t.size == 0:
        return t.copy()
    if scale == "each":
        lo, hi = t.min(), t.max()
        if not hi > lo:
            return np.full_like(t, 0.5)
        out = (t - lo) / (hi - lo)
    else:
        peak = np.abs(t).max()
        if not peak > 0:
            return np.full_like(t, 0.5)
        out = 0.5 + 0.5 * (t / peak)
    return np.clip(out, 0.0, 1.0)


def _pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    return pyplot("cots neurons' figures")


def _save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (parents made) and close it."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def _finish(fig: Any, ax: Any, title: str | None, path: str | Path) -> Path:
    """Title, grid and legend on ``ax``; write ``fig`` to ``path``."""
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _check_length(name: str, values: Sequence[Any] | None, n: int) -> None:
    """Raise ValueError unless ``values`` is None or has ``n`` entries."""
    if values is not None and len(values) != n:
        raise ValueError(f"{name} must have one entry per image ({n}), got {len(values)}")


def save_montage(images: np.ndarray, path: str | Path, columns: int = 8, title: str | None = None,
                 labels: Sequence[str] | None = None, frames: Sequence[str | None] | None = None,
                 scale: str = "each") -> Path:
    """Draw ``images`` as a grid of tiles, ``columns`` per row, and write it to ``path``.

    Parameters
    ----------
    images : np.ndarray
        (N, H, W, C) with N >= 1 and C in (1, 3); finite values. C == 1 is shown grey,
        C == 3 as RGB.
    path : str or Path
        The PNG to write; its parent folders are made.
    columns : int
        Tiles per row (fewer if N is smaller).
    title : str, optional
        Title above the grid.
    labels : sequence of str, optional
        N short strings (e.g. ``"0.53"``) shown small under each tile.
    frames : sequence of str or None, optional
        N matplotlib colours (``"tab:green"``) drawn as a border around the tile, or None for
        no border.
    scale : {"each", "symmetric"}
        How each tile is mapped to [0, 1]; see `tile_to_unit`.

    Returns
    -------
    Path
        ``path``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] < 1 or images.shape[3] not in (1, 3) or 0 in images.shape:
        raise ValueError(f"images must have shape (N, H, W, C) with N >= 1 and C in (1, 3), "
                         f"got shape {images.shape}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    n, h, w, c = images.shape
    _check_length("labels", labels, n)
    _check_length("frames", frames, n)
    if not np.isfinite(images).all():
        raise ValueError(f"images must be finite, got {int((~np.isfinite(images)).sum())} NaN or inf values")

    cols = min(int(columns), n)
    rows = -(-n // cols)
    # Layout in inches: tiles about 1 inch wide (2 for a handful, 0.8 for big grids), gaps
    # between them, a strip under each tile for its label and one on top for the title.
    tile_w = 2.0 if n <= 4 else 1.0 if n <= 64 else 0.8
    tile_h = tile_w * h / w
    gap = 0.08
    label_h = 0.16 if labels is not None else 0.0
    top = 0.4 if title else gap
    fig_w = cols * tile_w + (cols + 1) * gap
    fig_h = top + rows * (tile_h + label_h + gap)
    plt = _pyplot()
    fig = plt.figure(figsize=(max(fig_w, 2.5 if title else 0.0), fig_h))
    fig_w = fig.get_figwidth()
    x0 = (fig_w - (cols * tile_w + (cols + 1) * gap)) / 2  # centre a narrow grid under a wide title
    for i in range(n):
        r, col = divmod(i, cols)
        left = x0 + gap + col * (tile_w + gap)
        bottom = fig_h - top - (r + 1) * (tile_h + label_h + gap) + label_h + gap
        ax = fig.add_axes((left / fig_w, bottom / fig_h, tile_w / fig_w, tile_h / fig_h))
        tile = tile_to_unit(images[i], scale)  # (H, W, C)
        if c == 1:
            ax.imshow(tile[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(tile, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        colour = frames[i] if frames is not None else None
        for spine in ax.spines.values():
            spine.set_visible(colour is not None)
            if colour is not None:
                spine.set_edgecolor(colour)
                spine.set_linewidth(3.0)
        if labels is not None:
            ax.text(0.5, -0.03, str(labels[i]), transform=ax.transAxes, ha="center", va="top", fontsize=7)
    if title:
        fig.suptitle(title, y=1 - 0.12 / fig_h, va="top", fontsize=10)
    return _save(fig, path)


def _as_1d(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    """``values`` as a finite 1-D float64 array, or ValueError naming ``name``."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(a)).sum())} NaN or inf values")
    return a


def save_histogram(positives: np.ndarray, negatives: np.ndarray, path: str | Path,
                   threshold: float | None = None, title: str | None = None,
                   labels: tuple[str, str] = ("faces", "distractors")) -> Path:
    """Overlay the histograms of two classes' activations (shared bins) and write them to ``path``.

    Parameters
    ----------
    positives, negatives : np.ndarray
        (P,) and (Q,) activations; one of them may be empty, not both.
    path : str or Path
        The PNG to write; its parent folders are made.
    threshold : float, optional
        Drawn as a dashed vertical line labelled "threshold".
    title : str, optional
        Axes title.
    labels : (str, str)
        Legend names of the two classes; the legend adds each count, e.g. "faces (n=30)".
        Bars are fractions of their class (each class sums to 1), so classes of unequal size
        compare.

    Returns
    -------
    Path
        ``path``.
    """
    pos = _as_1d("positives", positives)  # (P,)
    neg = _as_1d("negatives", negatives)  # (Q,)
    if pos.size == 0 and neg.size == 0:
        raise ValueError("save_histogram needs at least one activation, got two empty arrays")
    edges = np.histogram_bin_edges(np.concatenate([pos, neg]), bins=20)  # (21,)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for values, label, colour in ((pos, labels[0], "tab:green"), (neg, labels[1], "tab:red")):
        if values.size:  # each class sums to 1, so a small class is not dwarfed by a big one
            ax.hist(values, bins=edges, weights=np.full(values.size, 1.0 / values.size), alpha=0.45,
                    color=colour, edgecolor=colour, label=f"{label} (n={values.size})")
    if threshold is not None:
        ax.axvline(float(threshold), color="black", linestyle="--", linewidth=1.2, label="threshold")
    ax.set_xlabel("activation")
    ax.set_ylabel("fraction of class")
    return _finish(fig, ax, title, path)


def save_curves(series: Mapping[str, Sequence[float]], path: str | Path, xlabel: str = "step",
                ylabel: str = "activation", title: str | None = None) -> Path:
    """Draw one line per entry of ``series`` against its index and write it to ``path``.

    Parameters
    ----------
    series : mapping of str to sequence of float
        Legend label -> (T,) values, e.g. a stimulus's activation at each ascent step.
    path : str or Path
        The PNG to write; its parent folders are made.
    xlabel, ylabel : str
        Axis labels.
    title : str, optional
        Axes title.

    Returns
    -------
    Path
        ``path``.
    """
    if not series:
        raise ValueError("series must hold at least one curve, got none")
    curves = {str(label): _as_1d(f"series[{label!r}]", values) for label, values in series.items()}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, ys in curves.items():  # (T,)
        ax.plot(np.arange(ys.size), ys, marker="o" if ys.size < 2 else None, linewidth=1.4, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _finish(fig, ax, title, path)


def save_invariance(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path,
                    title: str | None = None) -> Path:
    """One panel per transform of :func:`models.analysis.invariance.invariance_curves`: the
    relative response against the amount. Returns ``path``."""
    if not curves:
        raise ValueError("curves must hold at least one transform, got none")
    units = {"translation": "shift (fraction of the width)", "scale": "scale factor", "rotation": "degrees"}
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.0), squeeze=False)
    for ax, (kind, curve) in zip(axes[0], curves.items()):
        ax.plot(curve["amounts"], curve["relative"], marker="o", linewidth=1.4)
        ax.axhline(1.0, color="grey", linewidth=0.8, alpha=0.6)
        ax.set_xlabel(units.get(kind, kind))
        ax.set_title(kind)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("response / untransformed")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
