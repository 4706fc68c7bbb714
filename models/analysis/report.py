"""The run report: the figures of an :class:`~models.analysis.Analysis`, ``neurons.json`` and
``report.html`` (one self-contained page: the figures embedded, also kept as PNGs in
``report/``). Rank 0 only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..training.metrics import plot_curves, plot_loss, read_metrics
from .figures import save_curves, save_histogram, save_invariance, save_montage
from .report_html import Figure, write_report

if TYPE_CHECKING:
    from .run import Analysis

__all__ = ["write_run_report", "PROTOCOL", "TOP_IMAGES"]

TOP_IMAGES = 48  # Le et al.'s figure 3 shows a neuron's 48 top stimuli

PROTOCOL = (
    "Accuracy of a neuron, as Le et al. (ICML 2012) measure it: its activations are thresholded at 20 equally "
    "spaced values between their minimum and maximum, an image is called a face when the activation is above the "
    "threshold, and the best threshold counts. At the highest threshold nothing is called a face, so no neuron "
    "scores below the all-negative guess.",
    "Honest selection: the labelled images are split in two halves, each class split evenly. The neuron and its "
    "threshold are chosen on one half and scored on the other; then the halves swap. Each image is scored once, by "
    "a neuron chosen without it: the held-out accuracy pools both folds, and its 95% Wilson interval says how much "
    "a set this small can tell. The oracle column chooses and scores on the same (all) images and flatters every "
    "model that has many neurons to choose from; it is shown for reference only.",
    "Baselines are scored the same way: the same architecture with its initial random weights (the run's seed "
    "scheme), a bank of random unit-norm linear filters applied to the normalised input (as many as the layer has "
    "neurons, at most 4096), and the all-negative guess. Every image is normalised on its own, as in training, so "
    "brightness or contrast alone cannot separate the classes.",
    "The figures show the best neurons chosen on all labelled images (the oracle's choice): look at them as "
    "pictures, and read the accuracy from the held-out column.",
)


def _hwc(x: np.ndarray) -> np.ndarray:
    """(H, W, C, K) to (K, H, W, C)."""
    return np.moveaxis(x, -1, 0)


def write_run_report(result: "Analysis", out: Path, pool_faces: np.ndarray | None, images: np.ndarray,
                     filters: np.ndarray, initial_filters: np.ndarray | None = None) -> Path:
    """Draw every figure into ``out/report/``, write ``out/neurons.json`` and ``out/report.html``.

    Parameters
    ----------
    result : Analysis
    out : Path
        The report's folder.
    pool_faces : (pool,) bool or None
        Which unlabelled samples are faces (bundled data), for the frames of the top images.
    images : (N + pool, H, W, C)
        The labelled images, then the pool, as evaluated.
    filters : (F, k, k, C)
        First-layer filters to show.
    initial_filters : (F, k, k, C), optional
        The same filters at the network's initial weights (the control).

    Returns
    -------
    Path of report.html
    """
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    labels = result.labelled.labels
    n = len(labels)
    frames: list[str | None] = ["tab:green" if y else "tab:red" for y in labels]
    frames += [None if pool_faces is None else ("tab:olive" if f else None)
               for f in (pool_faces if pool_faces is not None else [None] * (len(images) - n))]
    trained = result.trained
    figures = []
    for rank, (cand, row) in enumerate(zip(trained.best, result.top_rows)):
        order = np.lexsort((np.arange(len(row)), -row))[:TOP_IMAGES]
        name = f"report/top_images_{rank + 1}.png"
        save_montage(images[order], out / name, columns=8, labels=[f"{row[i]:.3g}" for i in order],
                     frames=[frames[i] for i in order],
                     title=f"neuron {result.position(cand.index)}: top {len(order)} of {len(row)} images")
        figures.append(Figure(name, f"Top images of best neuron {rank + 1}, {result.position(cand.index)}",
                              f"accuracy {cand.correct / trained.total:.1%} on all labelled images (oracle choice). "
                              "Frames: green labelled face, red labelled distractor, olive a face among the "
                              "unlabelled training-distribution samples, none a natural-image sample."))
    top = trained.best[0]
    row = result.top_rows[0][:n]
    save_histogram(row[labels], row[~labels], folder / "histogram.png", threshold=top.threshold,
                   title=f"neuron {result.position(top.index)} on the labelled images")
    figures.append(Figure("report/histogram.png", "Activations of the best neuron",
                          "faces against distractors, with its best threshold on all labelled images"))
    k = len(trained.best)
    save_montage(_hwc(result.stimulus.images), folder / "stimulus.png", columns=min(k, 4), scale="symmetric",
                 labels=[f"{v:.3g} (top image {u:.3g})" for v, u in zip(result.stimulus.values, result.natural_values)],
                 title="optimal stimuli, norm 1 (mid-grey is 0)")
    figures.append(Figure("report/stimulus.png", "Optimal stimuli of the best neurons",
                          "projected gradient ascent on ||x|| = 1 through the whole network; each label gives the "
                          "neuron's activation and, in brackets, that of its top natural image scaled to norm 1"))
    save_curves({f"neuron {i + 1}": result.stimulus.history[:, i] for i in range(k)}, folder / "ascent.png",
                xlabel="ascent step", ylabel="activation", title="optimal stimulus: activation during the ascent")
    figures.append(Figure("report/ascent.png", "Gradient ascent", "activation of each iterate"))
    measured = result.first_stage
    for name, bank, when in (("filters", filters, "trained"), ("filters_initial", initial_filters, "initial")):
        if bank is None:
            continue
        numbers = measured.get(when, {})
        said = (f"median OSI {numbers['osi_median']:.2f}, locality {numbers['locality_median']:.2f} over "
                f"{numbers['count']} filters" if numbers else "")
        phrase = result.filters_phrase() if when == "trained" else None
        judged = "" if phrase is None else f" By the measures they {phrase} (see the verdict)."
        save_montage(bank, folder / f"{name}.png", columns=8, scale="symmetric",
                     title=f"first-layer filters, {when}: median OSI {numbers.get('osi_median', float('nan')):.2f}")
        figures.append(Figure(f"report/{name}.png", f"First-layer filters, {when} weights",
                              f"at 3 x 3 locations (rows: locations, columns: maps); {said}.{judged} "
                              "OSI is the orientation selectivity index at the preferred spatial frequency (0: "
                              "every orientation alike, 1: one), locality the share of a filter's energy in its "
                              "best quarter-area window"))
    for sampled in result.stage_stimuli:
        s = sampled["stage"]
        save_montage(sampled["images"], folder / f"stimuli_stage{s}.png", columns=min(8, len(sampled["images"])),
                     scale="symmetric", labels=[f"{tuple(p)}" for p in sampled["positions"]],
                     title=f"stage {s} pooling: optimal stimuli of sampled neurons (row, column, map)")
        figures.append(Figure(f"report/stimuli_stage{s}.png", f"Stage {s}: what its neurons respond to",
                              "optimal stimuli (norm 1, in the preprocessed input space) of maps 0 and 1 of the "
                              "pooling layer at four locations spread over it"))
    for s, (inputs, rebuilt) in enumerate(result.reconstructions):
        if s:  # a later stage reads feature maps: show map 0 of its input and of the rebuild
            inputs, rebuilt = inputs[..., :1], rebuilt[..., :1]
        pairs = np.stack([inputs, rebuilt], axis=1).reshape((-1,) + inputs.shape[1:])  # input, then its rebuild
        name = "reconstructions.png" if s == 0 else f"reconstructions_stage{s}.png"
        what = "held-out images" if s == 0 else f"map 0 of stage {s}'s input (stage {s - 1}'s features)"
        save_montage(pairs, folder / name, columns=min(8, len(pairs)), scale="symmetric",
                     labels=["input", "rebuilt"] * len(inputs), title=f"{what} and stage {s}'s reconstructions")
        figures.append(Figure(f"report/{name}", f"Reconstructions, stage {s}",
                              ("labelled (never trained on) images as the first stage reads them, whitened when "
                               "the run whitens" if s == 0 else
                               f"map 0 of what stage {s} reads on the same labelled images (the features of the "
                               f"stage below)") + f", each beside stage {s}'s reconstruction W2 W1^T x"))
    if result.invariance:
        save_invariance(result.invariance, folder / "invariance.png",
                        title=f"neuron {result.position(top.index)} on its top labelled faces, transformed")
        figures.append(Figure("report/invariance.png", "Invariance of the best neuron",
                              "its mean response to its top labelled faces as they are shifted, scaled and "
                              "rotated in plane, over its response to them untransformed (Le et al.'s figure 4)"))
    metrics = result.run / "metrics.jsonl"
    records = read_metrics(metrics) if metrics.is_file() else []
    if records:
        plot_loss(records, folder / "loss.png", title=f"{result.run.name}: objective per image")
        figures.append(Figure("report/loss.png", "Training loss", "per stage: objective, reconstruction, sparsity"))
        plot_curves(records, folder / "curves.png", title=f"{result.run.name}: run")
        figures.append(Figure("report/curves.png", "Training curves",
                              "held-out against training objective per stage, weight and gradient norms, learning "
                              "rate, samples/s, and the shares of a step spent on data, communication and compute"))

    (out / "neurons.json").write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    columns = ["Model", "Neurons", "Held-out accuracy", "95% interval", "Fold 1 held-out accuracy",
               "Fold 2 held-out accuracy", "Oracle accuracy (chosen and scored on all images)"]
    table = {"columns": columns, "rows": result.table_rows(),
             "caption": f"Face selectivity of the best neuron of stage {result.stage} {result.layer}, "
                        f"{result.labelled.positives} faces and {result.labelled.negatives} distractors"}
    summary = [("run", str(result.run)), ("checkpoint step", str(result.step)),
               ("layer", f"stage {result.stage} {result.layer}, {result.shape} = {int(np.prod(result.shape)):,} "
                         "neurons"),
               ("labelled images", result.labelled.source),
               ("best neuron (all images)", f"{result.position(top.index)}, threshold {top.threshold:.4g}"),
               ("chosen per fold", "; ".join(f"{result.position(f.neuron)} ({f.selection_accuracy:.1%} on its "
                                              f"selection half)" for f in trained.folds))]
    return write_report(out / "report.html", f"cots neurons: {result.run}", summary, table, figures, PROTOCOL,
                        verdict=result.findings())
