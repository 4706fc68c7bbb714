"""What a network costs on a grid of ranks, worked out from shapes alone (pure: no MPI, no
weight memory): per rank, parameters and the bytes of weights, gradients, optimiser state,
activations for a batch, halo buffers and GEMM workspace; per layer, the halo traffic of a
training step; FLOPs; and a predicted step time from a machine profile
(:class:`models.planning.profile.Rates`).

The layout arithmetic is the layers' own (:mod:`layers.geometry`): output locations split
over the grid in balanced blocks, each layer fetching the input box its block reads. The
memory model follows what the implementation allocates (see docs/scaling.md):

- weights: every stage's encoder and decoder weights (tied stages: the encoder's only);
- gradients and optimiser state (one slot: SGD momentum, Adagrad's sum of squares, in the
  bytes of ``train.state_dtype``): only for the stages a step trains, and with
  ``train.joint_update = "by_stage"`` the gradients of one stage at a time. They are
  allocated at a stage's first step and freed when the trainer moves on, so greedy training
  holds one stage's; the update runs in chunks and adds no block-sized temporaries;
- activations, for the stages a step runs: each layer's fetched input box and its output
  (the layers keep both for the backward pass), the decoder's reconstruction, and the backward
  pass's temporaries (the decoder's fetched gradient box, the gradients of the encoder and
  pooling outputs, the pooling's gradient box);
- GEMM workspace: the row strip the filtering kernels copy (about
  :data:`layers.lc_kernels.STRIP_BYTES` per block of columns);
- runtime: the process before any model exists (interpreter, libraries), from the profile.

In greedy mode each stage's phase is planned; the plan shown is the phase that needs the most
memory, with every phase's memory and time listed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from distarray import Box, factor_grid
from layers.geometry import Window, input_box, input_layout, output_layout
from layers.lc_kernels import STRIP_BYTES

from ..build import grid_dims
from ..config import Config
from ..network import stage_of
from ..precision import bytes_per_element
from .profile import update_key

__all__ = ["LayerCost", "RankPlan", "Plan", "format_plan", "plan_network", "suggest_grids"]

_SLOTS = {"sgd": 1, "adagrad": 1}


@dataclass(frozen=True)
class LayerCost:
    """One layer on one rank.

    Attributes
    ----------
    name : str
        "stage{s}.filter", ".pool", ".norm" or ".decoder".
    out_shape : (rows, cols, maps)
        Global output shape (for the decoder: its reconstruction, the stage's input shape).
    params : int
        Weights this rank holds.
    box : int
        Elements of the input box it fetches (batch included; padding included).
    halo : int
        Elements of that box other ranks own (the traffic of one fetch or accumulate).
    peers : int
        Ranks it exchanges with.
    out : int
        Elements of this rank's output block (batch included).
    flops : int
        Floating-point operations of its forward pass on this rank.
    """

    name: str
    out_shape: tuple[int, int, int]
    params: int
    box: int
    halo: int
    peers: int
    out: int
    flops: int


@dataclass
class RankPlan:
    """Everything :func:`plan_network` works out for one rank (bytes, FLOPs, seconds)."""

    rank: int
    coords: tuple[int, int]
    layers: list[LayerCost]
    memory: dict[str, int]
    flops: int
    halo_bytes: int
    messages: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)


@dataclass
class Plan:
    """A network on a grid: per-rank costs, the busiest rank's, and whether it fits."""

    ranks: int
    grid: tuple[int, int]
    batch: int
    dtype: str
    stages: list[int]
    per_rank: list[RankPlan]
    device_bytes: int | None
    total_params: int
    phases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def worst(self) -> RankPlan:
        """The rank with the most memory."""
        return max(self.per_rank, key=lambda r: r.memory["total"])

    @property
    def seconds(self) -> float | None:
        """The predicted step time: the slowest rank's (None without rates)."""
        times = [r.seconds["total"] for r in self.per_rank if r.seconds]
        return max(times) if times else None

    @property
    def fits(self) -> bool | None:
        """Whether every rank fits its memory (None when no memory size was given)."""
        return None if self.device_bytes is None else self.worst.memory["total"] <= self.device_bytes

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON."""
        return {"ranks": self.ranks, "grid": list(self.grid), "batch": self.batch, "dtype": self.dtype,
                "stages_per_step": self.stages, "total_params": self.total_params,
                "device_bytes": self.device_bytes, "fits": self.fits, "phases": self.phases,
                "per_rank": [asdict(r) | {"params": r.params} for r in self.per_rank]}


def _halo(layout: Any, rank: int, box: Box) -> tuple[int, int]:
    """Elements of ``box`` (inside the bounds) owned by other ranks, and how many ranks."""
    inside = box.intersect(layout.bounds)
    if inside is None:
        return 0, 0
    own = inside.intersect(layout.box(rank))
    others = [r for r in layout.owners(inside) if r != rank]
    return inside.size - (own.size if own is not None else 0), len(others)


def _window_layer(name: str, in_shape: Sequence[int], out_shape: Sequence[int], window: Window,
                  grid: tuple[int, int], rank: int, batch: int, params_per_location: int,
                  flops_per_output: int) -> LayerCost:
    in_lay = input_layout(tuple(in_shape) + (batch,), grid, np.float32)
    out_lay = output_layout(tuple(out_shape) + (batch,), grid, np.float32)
    block = out_lay.box(rank)
    box = input_box(window, block, in_shape[2], batch)
    halo, peers = _halo(in_lay, rank, box)
    locations = block.shape[0] * block.shape[1]
    out = block.size
    return LayerCost(name, tuple(out_shape), locations * params_per_location, box.size, halo, peers, out,
                     out * flops_per_output)


def _stage_layers(s: int, spec: Any, in_shape: tuple[int, int, int], grid: tuple[int, int], rank: int,
                  batch: int) -> tuple[list[LayerCost], tuple[int, int, int]]:
    """The filter, pooling, LCN and decoder costs of stage ``s`` on ``rank``, and its output shape."""
    h, w, c = in_shape
    win = Window(spec.k, spec.stride)
    fan_in = spec.k * spec.k * c
    z = (win.out_extent(h), win.out_extent(w), spec.maps)
    filt = _window_layer(f"stage{s}.filter", in_shape, z, win, grid, rank, batch, spec.maps * fan_in, 2 * fan_in)
    pwin = Window(spec.pool)
    p = (pwin.out_extent(z[0]), pwin.out_extent(z[1]), spec.maps)
    pool = _window_layer(f"stage{s}.pool", z, p, pwin, grid, rank, batch, 0, 2 * spec.pool**2 + 2)
    layers = [filt, pool]
    out = p
    if spec.lcn:
        nwin = Window(spec.lcn)
        out = (nwin.out_extent(p[0]), nwin.out_extent(p[1]), spec.maps)
        layers.append(_window_layer(f"stage{s}.norm", p, out, nwin, grid, rank, batch, 0,
                                    6 * spec.lcn**2 * spec.maps + 8))
    in_lay = input_layout(tuple(in_shape) + (batch,), grid, np.float32)
    decoder = LayerCost(f"stage{s}.decoder", tuple(in_shape), 0 if spec.tied else filt.params, filt.box, filt.halo,
                        filt.peers, in_lay.box(rank).size, filt.flops)  # tied: no weights of its own
    return layers + [decoder], out


def _strip(layer: LayerCost, spec: Any, channels: int, batch: int, itemsize: int) -> int:
    """Bytes of the filtering kernels' row strip (k rows of the box, cut into column blocks)."""
    rows = max(1, layer.box // max(1, channels * batch))  # box rows x columns
    strip = spec.k * int(np.sqrt(rows)) * channels * batch * itemsize
    return min(strip, max(STRIP_BYTES, spec.k * spec.k * channels * batch * itemsize))



def _rank_plan(rank: int, specs: Sequence[Any], input_shape: tuple[int, int, int], grid: tuple[int, int],
               batch: int, itemsize: int, optimizer: str, stages: list[int],
               state_itemsize: int | None = None, by_stage: bool = False,
               update: str | None = None) -> tuple[RankPlan, dict[str, Any]]:
    """One rank's memory and work counts for a step that trains ``stages``; the optimiser
    state takes ``state_itemsize`` bytes per element (default: the parameters'), and with
    ``by_stage`` the step holds one stage's gradients at a time (the largest counts). ``update``
    names the update's measured rate (:func:`models.planning.profile.update_key`)."""
    top = max(stages)
    shape, layers, act, workspace = input_shape, [], 0, 0
    work: dict[str, Any] = {"kernels": {}, "windows": {}, "calls": 0, "copy_bytes": 0, "optimizer": update or optimizer,
                            "update_params": 0, "halo_bytes": 0, "messages": 0, "samples": batch,
                            "sample_values": int(np.prod(input_shape))}
    flops = 0

    def kernel(name: str, fan: int, count: float) -> None:
        work["kernels"][(name, fan)] = work["kernels"].get((name, fan), 0) + count

    def window(op: str, side: int, values: int) -> None:
        work["windows"][(op, side)] = work["windows"].get((op, side), 0) + values

    def exchange(layer: LayerCost, times: int = 1) -> None:
        work["copy_bytes"] += times * 2 * layer.box * itemsize  # the box assembled from blocks
        work["halo_bytes"] += times * layer.halo * itemsize
        work["messages"] += times * layer.peers

    for s, spec in enumerate(specs):
        mine, out = _stage_layers(s, spec, shape, grid, rank, batch)
        layers += mine
        if s <= top:
            filt, pool, *rest = mine
            norm = rest[0] if len(rest) == 2 else None
            decoder = rest[-1]
            fan = spec.k * spec.k * shape[2]
            ran = [filt, pool] + ([norm] if norm and s < top else [])
            act += sum(l.box + l.out for l in ran)
            workspace = max(workspace, _strip(filt, spec, shape[2], batch, itemsize))
            kernel("forward", fan, filt.flops)
            window("pool_forward", spec.pool, pool.out)
            if norm and s < top:
                window("norm_forward", spec.lcn, norm.out)
            for layer in ran:
                exchange(layer)
            work["calls"] += len(ran)
            if s in stages:  # objective: decoder forward and the backward pass
                act += decoder.out + decoder.box + 2 * filt.out + pool.out + pool.box
                kernel("forward", fan, filt.flops)  # the decoder's backward: a filtering forward
                kernel("input_grad", fan, filt.flops)  # the decoder's forward
                kernel("weight_grad", fan, 2 * filt.flops)  # decoder and encoder weight gradients
                window("pool_backward", spec.pool, pool.out)
                exchange(filt, 2)  # decoder accumulate (forward) and fetch (backward)
                exchange(pool)  # pooling backward's accumulate
                work["calls"] += 4
                work["update_params"] += filt.params + decoder.params  # tied: one weight array
            flops += sum(l.flops for l in ran) + (4 * filt.flops + pool.flops if s in stages else 0)
        shape = out
    params = sum(l.params for l in layers)
    trained = sum(l.params for l in layers if stage_of(l.name) in stages)
    held = max(sum(l.params for l in layers if stage_of(l.name) == s) for s in stages) if by_stage else trained
    memory = {"weights": params * itemsize, "gradients": held * itemsize,
              "optimizer": _SLOTS[optimizer] * trained * (state_itemsize or itemsize), "activations": act * itemsize,
              "workspace": workspace}
    plan = RankPlan(rank, (rank // grid[1], rank % grid[1]), layers, memory, flops, work["halo_bytes"],
                    work["messages"])
    return plan, work


def plan_network(config: Config, ranks: int, grid: Sequence[int] | None = None, batch: int | None = None,
                 device_gib: float | None = None, rates: Any = None, stages: Sequence[int] | None = None) -> Plan:
    """The per-rank costs of training ``config``'s network on ``ranks`` ranks.

    Parameters
    ----------
    config : Config
        An effective configuration (:func:`models.config.parse_config`).
    ranks : int
        Ranks of one model-parallel group.
    grid : (rows, cols), optional
        Default: the config's ``run.grid``, else :func:`distarray.factor_grid`.
    batch : int, optional
        Default: ``train.batch``.
    device_gib : float, optional
        Memory per rank, GiB, to check against.
    rates : Rates, optional
        A machine profile (:mod:`models.planning.profile`); without one no time is predicted, and the
        runtime's own memory (interpreter and libraries) is not counted.
    stages : sequence of int, optional
        The stages a step trains. Default: every stage in joint mode; in greedy mode each
        stage in turn (a phase each), the plan being that of the phase needing the most memory.

    Returns
    -------
    Plan
        With ``phases``: per phase, its stages, the busiest rank's memory and predicted seconds.
    """
    model, train = config.model, config.train
    specs = model.stages
    h, w, c = model.input
    batch = int(train.batch if batch is None else batch)
    grid = tuple(int(g) for g in (grid_dims(config, ranks) if grid is None else grid))
    if len(grid) != 2 or grid[0] * grid[1] != ranks:
        raise ValueError(f"expected a grid of 2 dimensions with {ranks} ranks, got {list(grid)}")
    if stages is not None:
        phases = [sorted(set(int(s) for s in stages))]
        if not phases[0] or phases[0][0] < 0 or phases[0][-1] >= len(specs):
            raise ValueError(f"expected stages in range({len(specs)}), got {list(stages)}")
    elif train.mode == "greedy":
        phases = [[s] for s in range(len(specs))]
    else:
        phases = [list(range(len(specs)))]
    itemsize = np.dtype(model.dtype).itemsize
    state_itemsize = itemsize if train.state_dtype == "float32" else bytes_per_element(train.state_dtype)
    plans = []
    for phase in phases:
        per_rank = []
        for rank in range(ranks):
            plan, work = _rank_plan(rank, specs, (h, w, c), grid, batch, itemsize, train.optimizer, phase,
                                    state_itemsize, train.joint_update == "by_stage",
                                    update_key(train.optimizer, train.state_dtype, train.state_rounding))
            plan.memory["runtime"] = rates.base_bytes if rates is not None else 0
            plan.memory["total"] = sum(plan.memory.values())
            if rates is not None:
                plan.seconds = rates.predict(work, itemsize)
            per_rank.append(plan)
        plans.append(Plan(ranks, grid, batch, str(np.dtype(model.dtype)), phase, per_rank,
                          None if device_gib is None else int(device_gib * 2**30), sum(r.params for r in per_rank)))
    chosen = max(plans, key=lambda p: p.worst.memory["total"])
    chosen.phases = [{"stages": p.stages, "memory": p.worst.memory["total"],
                      "seconds": p.seconds}
                     for p in plans]
    return chosen


def suggest_grids(config: Config, device_gib: float, max_ranks: int = 4096,
                  batch: int | None = None) -> list[tuple[int, tuple[int, int], int]]:
    """The smallest rank counts (and their grids) whose busiest rank fits ``device_gib``:
    up to three (ranks, grid, bytes) entries, fewest ranks first."""
    h, w, _ = config.model.input
    found = []
    ranks = 1
    while ranks <= max_ranks and len(found) < 3:
        grid = factor_grid(ranks, (h, w))
        try:
            plan = plan_network(config, ranks, grid, batch, device_gib, stages=None)
        except ValueError:  # more ranks than output rows or columns
            break
        if plan.fits:
            found.append((ranks, grid, plan.worst.memory["total"]))
        ranks = ranks + 1 if ranks < 16 else ranks * 2
    return found


def _size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def format_plan(plan: Plan, rates: Any = None) -> str:
    """The plan as text: the busiest rank's memory, work and time, and its layers."""
    worst = plan.worst
    lines = [f"{plan.ranks} rank(s) as grid {list(plan.grid)}, batch {plan.batch}, {plan.dtype}; a step trains "
             f"stage(s) {plan.stages}; {plan.total_params:,} parameters in all (encoders and decoders)",
             f"busiest rank: {worst.rank} at grid coordinates {list(worst.coords)}"]
    names = {"weights": "weights", "gradients": "gradients", "optimizer": "optimizer state",
             "activations": f"activations (batch {plan.batch})", "workspace": "GEMM workspace",
             "runtime": "runtime (interpreter, libs)", "total": "total"}
    lines.append(f"  {'parameters':<26}{worst.params:>16,}")
    for key, label in names.items():
        lines.append(f"  {label:<26}{_size(worst.memory[key]):>16}")
    if plan.device_bytes is not None:
        verdict = "fits" if plan.fits else "DOES NOT FIT"
        lines.append(f"  {'memory per rank':<26}{_size(plan.device_bytes):>16}  {verdict}")
    lines.append(f"  {'FLOPs per step':<26}{worst.flops / 1e9:>14.3f} G")
    lines.append(f"  {'halo traffic per step':<26}{_size(worst.halo_bytes):>16} in {worst.messages} messages")
    if worst.seconds:
        t = worst.seconds
        lines.append(f"  {'predicted step':<26}{t['total']:>14.4f} s  (compute {t['compute']:.4f}, memory "
                     f"{t['memory']:.4f}, communication {t['comm']:.4f}; rates: {rates.source if rates else '?'})")
    if len(plan.phases) > 1:
        lines.append("greedy phases (the busiest rank's memory; the slowest rank's step):")
        for phase in plan.phases:
            when = f", {phase['seconds']:.4f} s per step" if phase["seconds"] is not None else ""
            lines.append(f"  training stage(s) {phase['stages']}: {_size(phase['memory'])}{when}")
    lines.append(f"layers of rank {worst.rank}: name, output (global), parameters, input box, halo, peers")
    itemsize = np.dtype(plan.dtype).itemsize
    for layer in worst.layers:
        lines.append(f"  {layer.name:<16}{str(layer.out_shape):<16}{layer.params:>14,}{_size(layer.box * itemsize):>14}"
                     f"{_size(layer.halo * itemsize):>14}{layer.peers:>4}")
    return "\n".join(lines)
