"""What a run measures about itself beyond the loss: weight and gradient norms per stage,
and the objective on a fixed held-out batch.

Both are collective and run at the same steps on every rank (``train.log_every`` and
``train.heldout_every`` are global), so they never desynchronise the ranks. Neither changes
the training: the held-out batch goes forward only, between steps, and its samples are
drawn from a reserved step of the data stream that training never reaches
(:data:`HELDOUT_STEP`: other samples of the same source; for the bundled source, crops of
the same pictures at other places and scales, not other pictures).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from distarray import comm
from distarray.reductions import local_squares

from ..autoencoder import Losses
from ..network import Network, stage_of
from .feed import BatchFeed

__all__ = ["HELDOUT_STEP", "parameter_norms", "replica_mean", "loss_terms", "HeldOutBatch"]

HELDOUT_STEP = 2**40  # the data stream's step of the held-out batch: far beyond any run's steps


def _squares(arrays: list[Any]) -> float:
    """This rank's sum of squares of several DistArrays' blocks (float64; local)."""
    return math.fsum(local_squares(a) for a in arrays)


def gradient_squares(grads: dict[str, Any]) -> float:
    """This rank's sum of squares of a stage's gradients (local), for :func:`parameter_norms`
    once those gradients are freed (joint training by stage)."""
    return _squares([grads[n] for n in sorted(grads)])


def parameter_norms(network: Network, stages: list[int],
                    grad_squares: dict[int, float] | None = None) -> dict[str, dict[str, float]]:
    """Collective: for each stage in ``stages``, the 2-norm of its parameters (``weight``) and
    of their last gradients (``grad``), every array of the stage together. One message for
    all of them: the ranks' sums of squares combined exactly (as distarray's reductions do).
    ``grad_squares`` gives this rank's gradient sums of squares of stages whose gradients
    are no longer held (from :func:`gradient_squares`)."""
    params = network.parameters()
    held = [s for s in stages if not grad_squares or s not in grad_squares]
    grads = network.gradients(held)
    partials = []
    for s in stages:
        mine = sorted(n for n in params if stage_of(n) == s)
        squares = grad_squares[s] if s not in held else _squares([grads[n] for n in mine if n in grads])
        partials += [_squares([params[n] for n in mine]), squares]
    totals = comm.exact_sums(network.grid.comm, partials)
    return {str(s): {"weight": math.sqrt(totals[2 * i]), "grad": math.sqrt(totals[2 * i + 1])}
            for i, s in enumerate(stages)}


def replica_mean(peers: Any, replicas: int, losses: dict[int, Losses]) -> dict[int, Losses]:
    """Collective over ``peers``: the objective's terms averaged over the replicas (exact sums)."""
    if replicas == 1:
        return losses
    sums = comm.exact_sums(peers, [v for l in losses.values() for v in (l.reconstruction, l.sparsity)])
    return {s: Losses(sums[2 * i] / replicas, sums[2 * i + 1] / replicas) for i, s in enumerate(losses)}


def loss_terms(losses: dict[int, Losses]) -> dict[str, dict[str, float]]:
    """The terms of each stage's objective as a metrics record holds them."""
    return {str(s): {"loss": l.total, "reconstruction": l.reconstruction, "sparsity": l.sparsity}
            for s, l in losses.items()}


class HeldOutBatch:
    """A fixed batch, drawn once, on which the objective is measured during training.

    Parameters
    ----------
    dataset, network, share, first
        As :class:`~models.training.feed.BatchFeed`: this replica draws samples
        ``first .. first + share`` of :data:`HELDOUT_STEP` (the training batch's size, so the
        layers reuse their plans).
    peers : communicator
        The ranks at this rank's place in the other replicas (the mean is over replicas).
    replicas : int
        How many replicas share the held-out batch.
    """

    def __init__(self, dataset: Any, network: Network, share: int, first: int, peers: Any, replicas: int):
        feed = BatchFeed(dataset, network, share, first, prefetch=False)
        try:
            self.x = feed(HELDOUT_STEP)  # collective
        finally:
            feed.close()
        self.network, self.peers, self.replicas = network, peers, replicas

    def losses(self, upto: int) -> dict[str, dict[str, float]]:
        """Collective: the objective's terms of stages 0 .. ``upto`` on the held-out batch."""
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged run is reported by the step's guard
            losses = self.network.forward(self.x, range(upto + 1))
        return loss_terms(replica_mean(self.peers, self.replicas, losses))
