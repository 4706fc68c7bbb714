"""The 9-layer network of Le et al. (ICML 2012): stages of [filtering, L2 pooling, local
contrast normalisation], each filtering layer trained by its own sparse-autoencoder
objective (:class:`~models.autoencoder.SparseAutoencoder`).

Stage s reads the (H, W, C, B) output of stage s-1's normalisation (the images for s = 0).
Every layer of every stage splits its output locations over the same 2-D grid of ranks, so
one stage's output is already in the next stage's input layout: no redistribution between
layers. Training objectives are local to their stage: a stage's input is held fixed while
its weights are updated (greedy or simultaneously, see :mod:`models.training.trainer`).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

import distarray as da
from layers import LocallyConnected2D, LocalContrastNorm

from .autoencoder import Losses, SparseAutoencoder
from .config import StageSpec
from .preprocess import Preprocess

__all__ = ["Network", "LE2012_STAGES", "stage_of"]


def stage_of(name: str) -> int:
    """The stage of a parameter or layer named "stage{s}.…" (as :meth:`Network.parameters`)."""
    return int(name[len("stage"):name.index(".")])


#: Le et al.'s sizes: 18x18 receptive fields, 8 maps per location, 5x5 pooling and LCN.
LE2012_STAGES = (StageSpec(18, 8, 5, 5),) * 3


class Network:
    """Stages of [locally connected filtering, L2 pooling, LCN] over one grid of ranks.

    Parameters
    ----------
    input_shape : (H, W, C)
        Image rows, columns and channels.
    stages : sequence of StageSpec
        One per stage, bottom first.
    grid : ProcessGrid
        2-D grid of ranks; every layer splits its output locations over it.
    seed : int
        Stage s draws its encoder from ``seed + 10 s`` and its decoder from ``seed + 10 s + 1``.
    dtype, backend_name
        float32 or float64; "numpy" or "cupy".

    Collective: construct, and call every method, on every rank of ``grid``.
    """

    def __init__(self, input_shape: Sequence[int], stages: Sequence[StageSpec], grid: da.ProcessGrid,
                 seed: int = 0, dtype: Any = np.float32, backend_name: str = "numpy"):
        if not stages:
            raise ValueError("expected at least one stage, got none")
        self.grid = grid
        self.specs = tuple(stages)
        self.stages: list[SparseAutoencoder] = []
        self.norms: list[LocalContrastNorm | None] = []
        shape = tuple(int(n) for n in input_shape)
        self.input_shape = shape
        for s, spec in enumerate(self.specs):
            try:
                stage = SparseAutoencoder(shape, spec.maps, spec.k, spec.pool, grid, lam=spec.lam, eps=spec.eps,
                                          stride=spec.stride, seed=seed + 10 * s, tied=spec.tied, norm=spec.norm,
                                          dtype=dtype, backend_name=backend_name)
                norm = (LocalContrastNorm(stage.out_shape, spec.lcn, grid, dtype=dtype, backend_name=backend_name)
                        if spec.lcn else None)
            except ValueError as exc:
                raise ValueError(f"stage {s} (input {shape}, {spec}): {exc}") from None
            self.stages.append(stage)
            self.norms.append(norm)
            shape = norm.out_shape if norm is not None else stage.out_shape
        self.output_shape = shape
        #: the input's preprocessing (LCN, ZCA whitening), applied by :meth:`input_array` (set
        #: from the data by the trainer, or from a checkpoint's metadata; None: the images as given)
        self.preprocess: Preprocess | None = None

    def __len__(self) -> int:
        return len(self.stages)

    def shapes(self) -> list[tuple[int, ...]]:
        """(H, W, C) after every layer, the input first."""
        out = [self.input_shape]
        for stage, norm in zip(self.stages, self.norms):
            out += [stage.encoder.out_shape, stage.out_shape] + ([norm.out_shape] if norm is not None else [])
        return out

    def input_layout(self, batch: int) -> da.Layout:
        """The layout the network's input batch must have."""
        return self.stages[0].encoder.input_layout(batch)

    def parameters(self) -> dict[str, da.DistArray]:
        """Every parameter, named "stage{s}.encoder.weight" and so on."""
        return {f"stage{s}.{name}": value for s, stage in enumerate(self.stages)
                for name, value in stage.parameters().items()}

    def gradients(self, stages: Iterable[int] | None = None) -> dict[str, da.DistArray]:
        """Gradients from the last backward of ``stages`` (default all), named as
        :meth:`parameters`. A stage's gradient arrays are allocated when first asked for."""
        chosen = range(len(self.stages)) if stages is None else sorted(set(int(s) for s in stages))
        return {f"stage{s}.{name}": value for s in chosen for name, value in self.stages[s].gradients().items()}

    def release_gradients(self, keep: Iterable[int] = ()) -> None:
        """Free the gradient arrays of every stage not in ``keep`` (greedy training holds
        only the trained stage's: a third of the gradient memory of le2012 or less)."""
        keep = set(int(s) for s in keep)
        for s, stage in enumerate(self.stages):
            if s not in keep:
                stage.release_gradients()

    def parameter_count(self) -> dict[str, int]:
        """Global element counts: encoder weights, decoder weights, everything."""
        params = self.parameters()
        enc = sum(int(np.prod(v.shape)) for n, v in params.items() if ".encoder." in n)
        dec = sum(int(np.prod(v.shape)) for n, v in params.items() if ".decoder." in n)
        return {"encoder": enc, "decoder": dec, "total": sum(int(np.prod(v.shape)) for v in params.values())}

    def input_array(self, images: Any) -> da.DistArray:
        """This rank's block of a global (H, W, C, B) batch that every rank holds, as the
        network's input, preprocessed by :attr:`preprocess` when set (no messages: the block's
        halo is read from the global batch; the same bits on any number of ranks)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[:3] != self.input_shape:
            raise ValueError(f"expected images of shape {self.input_shape + ('B',)}, got {images.shape}")
        layout = self.input_layout(images.shape[3])
        xp = self.stages[0].encoder.xp
        box = layout.box(self.grid.rank).slices()
        if self.preprocess is None:
            block = images[box]
        else:
            block = self.preprocess.apply(images, *box[:2])[(slice(None),) * 2 + box[2:]]
        local = xp.ascontiguousarray(xp.asarray(block, dtype=layout.dtype))
        return da.DistArray(local, layout, self.grid)

    # -- any layer, forward and back to the input (analysis) -------------------------------
    def layer_names(self, stage: int) -> tuple[str, ...]:
        """The layers of ``stage`` in order: "filter", "pool" and, with LCN, "norm"."""
        self._check_stage(stage)
        return ("filter", "pool") + (("norm",) if self.norms[stage] is not None else ())

    def _check_stage(self, stage: int) -> None:
        if type(stage) is not int or not 0 <= stage < len(self.stages):
            raise ValueError(f"expected a stage in range({len(self.stages)}), got {stage!r}")

    def _path(self, stage: int, layer: str) -> list:
        """The layers from the input up to (and including) ``layer`` of ``stage``."""
        names = self.layer_names(stage)
        if layer not in names:
            raise ValueError(f"expected a layer of stage {stage} in {names}, got {layer!r}")
        path: list = []
        for s in range(stage + 1):
            stage_layers = [self.stages[s].encoder, self.stages[s].pool] + ([self.norms[s]] if self.norms[s] else [])
            path += stage_layers if s < stage else stage_layers[:names.index(layer) + 1]
        return path

    def layer_shape(self, stage: int, layer: str) -> tuple[int, int, int]:
        """(rows, columns, maps) of ``layer`` of ``stage``: its neurons."""
        return self._path(stage, layer)[-1].out_shape

    def forward_to(self, x: da.DistArray, stage: int, layer: str) -> da.DistArray:
        """The output of ``layer`` ("filter", "pool" or "norm") of ``stage`` on batch ``x``;
        every layer on the way saves what :meth:`backward_from` needs."""
        for module in self._path(stage, layer):
            x = module.forward(x)
        return x

    def backward_from(self, dy: da.DistArray, stage: int, layer: str) -> da.DistArray:
        """The gradient with respect to the network's input of ``sum(dy * y)``, ``y`` the
        output of the last :meth:`forward_to` with the same ``stage`` and ``layer``
        (parameter gradients are left untouched)."""
        for module in reversed(self._path(stage, layer)):
            filtering = isinstance(module, LocallyConnected2D)
            dy = module.backward(dy, weight_grad=False) if filtering else module.backward(dy)
        return dy

    def features(self, x: da.DistArray, stages: int | None = None) -> da.DistArray:
        """The output of the first ``stages`` stages (default all) on batch ``x``: the
        last stage's normalised (or, without LCN, pooled) features."""
        count = len(self.stages) if stages is None else int(stages)
        for s in range(count):
            x = self._handoff(s, self.stages[s].encode(x))
        return x

    def _handoff(self, s: int, pooled: da.DistArray) -> da.DistArray:
        norm = self.norms[s]
        return norm.forward(pooled) if norm is not None else pooled

    def forward(self, x: da.DistArray, train: Iterable[int]) -> dict[int, Losses]:
        """The objectives of the stages in ``train`` on batch ``x``, each stage reading the
        output of the one below (stages above the highest trained one are not run)."""
        train = sorted(set(int(s) for s in train))
        if not train or train[0] < 0 or train[-1] >= len(self.stages):
            raise ValueError(f"expected stages to train in range({len(self.stages)}), got {train}")
        losses = {}
        for s in range(train[-1] + 1):
            if s in train:
                losses[s], pooled = self.stages[s].forward(x)
            else:
                pooled = self.stages[s].encode(x)
            if s < train[-1]:
                x = self._handoff(s, pooled)
        return losses

    def backward(self, train: Iterable[int]) -> None:
        """Parameter gradients of the stages in ``train`` from the last :meth:`forward`
        (each stage's own objective; inputs held fixed)."""
        for s in sorted(set(int(s) for s in train)):
            self.stages[s].backward()

    def project(self, stages: Iterable[int]) -> None:
        """Put the unit-norm filters of ``stages`` back on their constraint (after an
        optimiser step; local, no messages)."""
        for s in sorted(set(int(s) for s in stages)):
            self.stages[s].project()

    @property
    def comm_seconds(self) -> float:
        """Seconds every layer spent inside exchange calls so far."""
        return sum(stage.comm_seconds for stage in self.stages) + sum(
            norm.comm_seconds for norm in self.norms if norm is not None)
