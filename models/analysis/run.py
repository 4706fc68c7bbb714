"""``cots neurons``: find a run's object-selective neurons, compare them with baselines
scored the same way, draw them, and write ``report.html``.

    mpiexec -n 2 cots neurons runs/demo

Python (collective: every rank of the job calls it)::

    from models.analysis import analyse_run
    result = analyse_run("runs/demo")
    print(result.table_text())

What is computed, in order: the chosen layer's activations on the labelled images and on a
pool of training-distribution samples (each rank its own neurons); the two-fold honest
selection for the trained network, the same network with its initial random weights, a bank
of random linear filters on the normalised input, and the all-negative guess; then, for the
best few neurons, their top images, activation histograms and optimal stimuli; the
first-layer filters and the loss curve. Rank 0 draws and writes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from distarray import comm

from ..build import build_dataset
from ..config import Config
from ..data import BundledImages
from ..extras import require
from ..network import Network
from .activations import layer_activations, neuron_position, random_filter_activations
from .invariance import invariance_curves
from .orientation import filter_measures
from .neurons import (LabelledImages, Selectivity, bundled_labelled, evaluate, folder_labelled, guess_selectivity,
                      load_trained, neuron_rows)
from .selectivity import wilson_interval
from .stimulus import Stimulus, neuron_values_and_gradient, optimal_stimulus

__all__ = ["Analysis", "analyse_run", "POOL_STEP", "MAX_RANDOM_FILTERS", "MAX_MEASURED_FILTERS"]

POOL_STEP = 2**40  # the pool of unlabelled samples is the data source's batch at this step (never trained on)
MAX_RANDOM_FILTERS = 4096  # the random-linear baseline has as many filters as the layer has neurons, at most this
RECONSTRUCTED = 8  # held-out images shown beside each stage's reconstructions
INVARIANCE_IMAGES = 8  # the best neuron's top labelled faces, transformed for its invariance curves
SAMPLED_STIMULUS_STEPS = 100  # ascent steps for the optimal stimuli of each stage's sampled neurons
OSI_TARGET = 0.45  # median first-stage OSI that counts as oriented (with twice the initial weights')
MAX_MEASURED_FILTERS = 4096  # first-stage OSI and locality: every filter, or an even grid of locations up to this


@dataclass
class Analysis:
    """What :func:`analyse_run` found (the same on every rank)."""

    run: Path
    step: int
    stage: int
    layer: str
    shape: tuple[int, int, int]
    labelled: LabelledImages
    results: list[Selectivity]
    stimulus: Stimulus
    natural_values: np.ndarray  # (K,) best neurons on their top pool image scaled to the stimulus norm
    top_rows: np.ndarray  # (K, N + pool) best neurons' activations: labelled images, then the pool
    first_stage: dict[str, Any] = field(default_factory=dict)  # OSI and locality: "trained", "initial"
    reconstructions: list[np.ndarray] = field(default_factory=list)  # per stage (2, R, H, W, C): its input, rebuilt
    invariance: dict[str, Any] = field(default_factory=dict)  # the best neuron under shifts, scales, rotations
    stage_stimuli: list[dict[str, Any]] = field(default_factory=list)  # per stage: sampled neurons' optimal stimuli
    seconds: dict[str, float] = field(default_factory=dict)
    report: Path | None = None

    @property
    def found(self) -> bool:
        """A selective neuron is found only when the trained network's 95% interval lies
        wholly above the held-out accuracies of the random-weights network and the guess."""
        lo, _ = self.trained.interval
        return lo > self.results[1].heldout_accuracy and lo > self.results[-1].heldout_accuracy

    def verdict(self) -> str:
        """One plain sentence with the numbers."""
        lo, hi = self.trained.interval
        words = "selective neuron found" if self.found else "no selective neuron found"
        text = (f"{words}: the best neuron scores {self.trained.heldout_accuracy:.1%} held out (95% interval "
                f"{lo:.1%} to {hi:.1%}) against {self.results[1].heldout_accuracy:.1%} for the same network at "
                f"random weights and {self.results[-1].heldout_accuracy:.1%} for the all-negative guess")
        if self.first_stage:
            trained, initial = self.first_stage["trained"], self.first_stage["initial"]
            text += (f"; first-stage filters: median OSI {trained['osi_median']:.2f} (initial weights "
                     f"{initial['osi_median']:.2f}), locality {trained['locality_median']:.2f} (initial "
                     f"{initial['locality_median']:.2f})")
        return text

    def filters_learned(self) -> dict[str, bool] | None:
        """Whether the first stage's filters are oriented (median OSI at least 0.45 and at
        least twice that of the initial weights: the learning target of docs/analysis.md) and
        localised (median locality at least twice the initial weights'); None without the
        measures."""
        if not self.first_stage:
            return None
        trained, initial = self.first_stage["trained"], self.first_stage["initial"]
        return {"oriented": trained["osi_median"] >= max(OSI_TARGET, 2 * initial["osi_median"]),
                "localised": trained["locality_median"] >= 2 * initial["locality_median"]}

    def filters_phrase(self) -> str | None:
        """"are oriented and localised", "are oriented but not localised", ...; None without
        the measures."""
        learned = self.filters_learned()
        if learned is None:
            return None
        return {(True, True): "are oriented and localised", (True, False): "are oriented but not localised",
                (False, True): "are localised but not oriented",
                (False, False): "are neither oriented nor localised"}[learned["oriented"], learned["localised"]]

    def findings(self) -> list[tuple[str, bool]]:
        """The verdict in plain words, one sentence per finding with whether it was found."""
        lo, hi = self.trained.interval
        neuron = (f"{'A selective neuron was found' if self.found else 'No selective neuron was found'}: the best "
                  f"neuron, chosen and scored on different halves of the labelled images, scores "
                  f"{self.trained.heldout_accuracy:.1%} (95% interval {lo:.1%} to {hi:.1%}) against "
                  f"{self.results[1].heldout_accuracy:.1%} for the same network at its random initial weights and "
                  f"{self.results[-1].heldout_accuracy:.1%} for the all-negative guess. "
                  + ("Its interval lies above both" if self.found else
                     "Found would need its whole interval above both")
                  + f" (random linear filters on the input, a template baseline: "
                    f"{self.results[2].heldout_accuracy:.1%}).")
        out = [(neuron, self.found)]
        learned = self.filters_learned()
        if learned is not None:
            trained, initial = self.first_stage["trained"], self.first_stage["initial"]
            both = learned["oriented"] and learned["localised"]
            out.append((f"The first-stage filters {self.filters_phrase()}: median "
                        f"orientation selectivity (OSI) {trained['osi_median']:.2f} against "
                        f"{initial['osi_median']:.2f} at the initial weights, median locality "
                        f"{trained['locality_median']:.2f} against {initial['locality_median']:.2f} "
                        f"(oriented: OSI at least {OSI_TARGET} and twice the initial; localised: locality at "
                        f"least twice the initial).", both))
        return out

    @property
    def trained(self) -> Selectivity:
        """The trained network's result."""
        return self.results[0]

    def position(self, neuron: int) -> tuple[int, int, int]:
        """(row, column, map) of a neuron of the analysed layer."""
        return neuron_position(neuron, self.shape)

    def table_rows(self) -> list[list[Any]]:
        """One row per model: name, neurons, held-out accuracy, 95 % interval, the folds'
        held-out accuracies, the oracle accuracy."""
        rows = []
        for r in self.results:
            lo, hi = r.interval
            rows.append([r.model, r.neurons or None, r.heldout_accuracy, f"{lo:.1%} to {hi:.1%}",
                         r.folds[0].heldout_accuracy, r.folds[1].heldout_accuracy, r.oracle_accuracy])
        return rows

    def table_text(self) -> str:
        """The numbers table as plain text."""
        head = f"{'model':<38} {'neurons':>8} {'held-out':>9} {'95% interval':>17} {'fold 1':>7} {'fold 2':>7} {'oracle':>7}"
        lines = [head]
        for name, n, acc, interval, f1, f2, oracle in self.table_rows():
            lines.append(f"{name:<38} {n or '':>8} {acc:>9.1%} {interval:>17} {f1:>7.1%} {f2:>7.1%} "
                         f"{'' if oracle is None else format(oracle, '.1%'):>7}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """Every number, for neurons.json."""
        return {
            "run": str(self.run), "step": self.step, "stage": self.stage, "layer": self.layer,
            "shape": list(self.shape), "images": {"source": self.labelled.source, "positives": self.labelled.positives,
                                                  "negatives": self.labelled.negatives},
            "results": [r.as_dict() | {"best_positions": [self.position(c.index) for c in r.best]}
                        for r in self.results],
            "stimulus": {"neurons": [c.index for c in self.trained.best], "values": self.stimulus.values.tolist(),
                         "natural_values_same_norm": self.natural_values.tolist()},
            "verdict": self.verdict(), "selective_neuron_found": self.found,
            "filters_learned": self.filters_learned(),
            "first_stage_filters": self.first_stage, "invariance": self.invariance,
            "stage_stimuli": [{"stage": s["stage"], "layer": s["layer"], "positions": s["positions"],
                               "values": s["values"]} for s in self.stage_stimuli],
            "seconds": self.seconds,
        }


def _labelled_for(config: Config, positives: str | Path | None,
                  negatives: str | Path | None) -> LabelledImages:
    h, w, channels = config.model.input
    if (positives is None) != (negatives is None):
        raise ValueError(f"expected both --positives and --negatives or neither, got positives {positives!r}, "
                         f"negatives {negatives!r}")
    if positives is not None:
        return folder_labelled(positives, negatives, (h, w), channels)
    data = config.data
    return bundled_labelled((h, w), channels, data.options.get("holdout", 30) if data.source == "bundled" else 30)


def _pool(config: Config, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``size`` samples of the run's data source, (size, H, W, C), and which are faces (or None)."""
    if size <= 0:
        return np.zeros((0, *config.model.input), np.float32), None
    source = build_dataset(config)
    if isinstance(source, BundledImages):
        batch, faces = source.batch_with_flags(POOL_STEP, size)
    else:
        batch, faces = source.batch(POOL_STEP, size), None
    return np.moveaxis(batch, -1, 0), faces


def _first_layer_filters(network: Network, places: int | None = 3, maps: int | None = 8) -> np.ndarray:
    """Filters of the first layer at ``places`` x ``places`` locations spread evenly over
    the output (None: every location, or as many as :data:`MAX_MEASURED_FILTERS` allows),
    up to ``maps`` each (None: all): (F, k, k, C), the same on every rank (collective)."""
    encoder = network.stages[0].encoder
    oh, ow, m = encoder.out_shape
    maps = m if maps is None else min(maps, m)
    if places is None:
        side = max(1, int(np.sqrt(MAX_MEASURED_FILTERS / maps)))
        rows, cols = (np.unique(np.linspace(0, n - 1, min(n, side)).round().astype(int)) for n in (oh, ow))
    else:
        rows, cols = (np.linspace(0, n - 1, places).round().astype(int) for n in (oh, ow))
    (i0, j0), (i1, j1) = encoder.block
    local = np.asarray(encoder.filters(), dtype=np.float64) if (i1 > i0 and j1 > j0) else None
    mine = {(i, j): local[i - i0, j - j0, :maps] for i in rows for j in cols
            if local is not None and i0 <= i < i1 and j0 <= j < j1}
    found: dict = {}
    for part in comm.allgather(network.grid.comm, {k: v.tolist() for k, v in mine.items()}):  # one owner each
        found.update(part)
    return np.concatenate([np.array(found[(i, j)]) for i in rows for j in cols])  # (F, k, k, C)


def _sampled_stimuli(network: Network, stage: int, steps: int, seed: int) -> dict[str, Any]:
    """Optimal stimuli of 8 neurons of ``stage``'s pooling layer: maps 0 and 1 at four
    locations spread over the layer (collective)."""
    layer = "pool"
    oh, ow, maps = network.layer_shape(stage, layer)
    spots = [(i, j) for i in sorted({oh // 4, (3 * oh) // 4}) for j in sorted({ow // 4, (3 * ow) // 4})]
    positions = [(i, j, m) for i, j in spots for m in range(min(2, maps))]
    neurons = [int(np.ravel_multi_index(p, (oh, ow, maps))) for p in positions]
    found = optimal_stimulus(network, neurons, stage, layer, steps=steps, seed=seed)
    return {"stage": stage, "layer": layer, "positions": [list(p) for p in positions],
            "values": found.values.tolist(), "images": np.moveaxis(found.images, -1, 0)}


def _reconstructions(network: Network, images: np.ndarray) -> list[np.ndarray]:
    """For every stage: its input on ``images`` (R, H, W, C) (the images as the first stage
    reads them, whitened when the run whitens; for a later stage the features of the one
    below) and that stage's reconstruction of it, as (2, R, h, w, c), on every rank
    (collective)."""
    first = network.input_array(np.moveaxis(images, 0, -1))  # (H, W, C, R) distributed
    out = []
    for s, stage in enumerate(network.stages):
        x = network.features(first, s)  # what stage s reads
        out.append(np.stack([np.moveaxis(a.allgather(), -1, 0) for a in (x, stage.reconstruct(x))]))
    return out


WIDE_INTERVAL = 0.10  # warn when a 75 % held-out score's 95 % interval reaches this far either side


def _check_labelled(positives: int, negatives: int) -> str | None:
    """The protocol selects on one half of the labelled images and scores on the other: refuse
    fewer than 2 of a class; a warning (else None) when the held-out score's interval is wide."""
    if positives < 2 or negatives < 2:
        raise ValueError(f"the protocol selects a neuron on one half of the labelled images and scores it on the "
                         f"other: expected at least 2 positives and 2 negatives, got {positives} and {negatives}")
    total = positives + negatives
    low, high = wilson_interval(round(0.75 * total), total)
    if (high - low) / 2 <= WIDE_INTERVAL:
        return None
    return (f"cots neurons: warning: only {total} labelled images ({positives} positives, {negatives} negatives): "
            f"a held-out score near 75% would have a 95% interval of {100 * low:.0f}% to {100 * high:.0f}% "
            f"(about +-{50 * (high - low):.0f} points); bring more images for a sharper answer")


def analyse_run(run: str | Path, out: str | Path | None = None, positives: str | Path | None = None,
                negatives: str | Path | None = None, stage: int | None = None, layer: str | None = None,
                checkpoint: str | Path | None = None, best: int = 4, pool: int = 1000, stimulus_steps: int = 200,
                seed: int = 0, world: Any = None, log: Callable[[str], None] | None = print) -> Analysis:
    """Find, score and draw the run's most face-selective neurons; write the report.

    Parameters
    ----------
    run : path
        A training run directory (holds checkpoints/).
    out : path, optional
        Where report.html, neurons.json and report/ go (default: the run directory).
    positives, negatives : path, optional
        Two image folders; default: the bundled held-out faces and distractors.
    stage, layer : optional
        The layer whose neurons are compared (default: the top stage's last layer).
    checkpoint : path, optional
        A checkpoint directory (default: the run's newest).
    best : int
        How many of the best neurons to draw.
    pool : int
        Unlabelled samples of the run's data source added to the labelled images for the
        top-images figures (not for any accuracy).
    stimulus_steps : int
        Projected gradient ascent steps for the optimal stimuli.
    seed : int
        Fixes the split into halves, the random filters and the stimuli's starts.
    world : communicator, optional
        Default: every rank of the job.
    log : callable or None
        Progress messages (rank 0 only).

    Collective: call on every rank of ``world`` with the same arguments.
    """
    world = comm.world() if world is None else world
    root = world.Get_rank() == 0
    say = log if (root and log is not None) else (lambda message: None)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = now - clock
        clock = now

    for module in ("matplotlib", "scipy"):  # before any work, on every rank alike
        require(module, "cots neurons")
    config, network, meta = load_trained(run, world, checkpoint)
    stage = len(network) - 1 if stage is None else stage
    layer = network.layer_names(stage)[-1] if layer is None else layer
    shape = network.layer_shape(stage, layer)
    if best < 1:
        raise ValueError(f"expected best >= 1, got {best}")
    labelled = _labelled_for(config, positives, negatives)
    warning = _check_labelled(labelled.positives, labelled.negatives)
    if warning and root:  # shown even with --quiet
        logging.getLogger("cots.neurons").warning(warning)
    extra, extra_faces = _pool(config, pool)
    say(f"cots neurons: {meta['path']} (step {meta['step']}), stage {stage} {layer}: {int(np.prod(shape)):,} neurons "
        f"{shape} over {world.Get_size()} rank(s); {labelled.positives} positives, {labelled.negatives} negatives, "
        f"{len(extra)} unlabelled samples")
    lap("load")

    everything = np.concatenate([labelled.images, extra])  # (N + pool, H, W, C)
    acts, indices = layer_activations(network, everything, stage, layer)
    n = len(labelled.labels)
    results = [evaluate("trained network", acts[:, :n], indices, labelled.labels, world, seed, best)]
    lap("trained")
    say(f"  trained network: held-out accuracy {results[0].heldout_accuracy:.1%} ({seconds['trained']:.1f} s)")

    _, untrained, _ = load_trained(run, world, checkpoint, trained=False)
    r_acts, r_indices = layer_activations(untrained, labelled.images, stage, layer)
    results.append(evaluate("same network, random weights", r_acts, r_indices, labelled.labels, world, seed, best))
    initial_filters = _first_layer_filters(untrained)
    first_stage = {"trained": filter_measures(_first_layer_filters(network, None, None)).as_dict(),
                   "initial": filter_measures(_first_layer_filters(untrained, None, None)).as_dict()}
    del untrained, r_acts
    count = min(int(np.prod(shape)), MAX_RANDOM_FILTERS)
    l_acts, l_indices = random_filter_activations(labelled.images, count, seed, world.Get_rank(), world.Get_size())
    results.append(evaluate("random linear filters on the input", l_acts, l_indices, labelled.labels, world, seed,
                            best))
    results.append(guess_selectivity(labelled.labels, seed))
    lap("baselines")
    say(f"  baselines: random weights {results[1].heldout_accuracy:.1%}, random linear "
        f"{results[2].heldout_accuracy:.1%}, guess {results[3].heldout_accuracy:.1%} ({seconds['baselines']:.1f} s)")

    chosen = [c.index for c in results[0].best]
    rows = neuron_rows(acts, indices, chosen, world)  # (K, N + pool)
    stimulus = optimal_stimulus(network, chosen, stage, layer, steps=stimulus_steps, seed=seed)
    tops = everything[rows.argmax(axis=1)]  # (K, H, W, C) each neuron's top image
    natural = np.moveaxis(tops, 0, -1).astype(np.float64)  # (H, W, C, K)
    natural /= np.sqrt((natural**2).sum(axis=(0, 1, 2), keepdims=True))
    natural_values, _ = neuron_values_and_gradient(network, natural, chosen, stage, layer)
    lap("stimulus")
    say(f"  optimal stimuli: {', '.join(f'{v:.3g}' for v in stimulus.values)} against top images at the same norm "
        f"{', '.join(f'{v:.3g}' for v in natural_values)} ({seconds['stimulus']:.1f} s)")
    filters = _first_layer_filters(network)
    reconstructions = _reconstructions(network, labelled.images[:RECONSTRUCTED])
    faces = np.flatnonzero(labelled.labels)
    top_faces = faces[np.argsort(-rows[0][faces], kind="stable")[:INVARIANCE_IMAGES]]  # the best neuron's
    invariance = (invariance_curves(network, labelled.images[top_faces], chosen[0], stage, layer, world)
                  if len(top_faces) else {})

    stage_stimuli = [_sampled_stimuli(network, s, min(stimulus_steps, SAMPLED_STIMULUS_STEPS), seed)
                     for s in range(len(network))]
    lap("figures data")

    result = Analysis(Path(run), int(meta["step"]), stage, layer, shape, labelled, results, stimulus,
                      natural_values, rows, first_stage=first_stage, reconstructions=reconstructions,
                      invariance=invariance, stage_stimuli=stage_stimuli, seconds=seconds)
    if root:
        from .report import write_run_report

        result.report = write_run_report(result, Path(run) if out is None else Path(out), extra_faces, everything,
                                         filters, initial_filters)
        lap("report")
        say(result.table_text())
        say(result.verdict())
        say(f"report: {result.report}")
    comm.barrier(world)
    return result
