"""The input of every training step: each rank draws its share of the batch, one plan moves it
to the first stage's layout, and the next batch is prepared while the current step computes.

A replica's share of the global batch (B / replicas samples) is split over its N ranks by
sample: rank r draws and normalises samples ``lo_r .. hi_r`` only (:func:`balanced_blocks`
of the share), whole, and preprocesses them whole (LCN and whitening need no halo then). The
samples held that way form a DistArray split along the batch axis over a 1-D grid of the
replica's ranks; a :class:`~distarray.exchange.FetchPlan`, built once, fetches from it the
(rows, cols, C, share) box each rank's first stage owns. Every sample is a function of (seed,
step, index) alone (:mod:`models.data.sources`) and the preprocessing of each sample is its
own, so the input is the same bits at any number of ranks, any grid and any prefetching.

Prefetch: a background thread draws, decodes, normalises and preprocesses batch s + 1 while
step s computes (NumPy, Pillow and FFmpeg release the GIL in their loops); at most one batch
is held ahead. Only the main thread calls MPI.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

import distarray as da
from distarray import comm
from distarray.exchange import FetchPlan
from distarray.layout import Layout, balanced_blocks

from ..data import DataError, ImageSource
from ..network import Network

__all__ = ["BatchFeed"]


class BatchFeed:
    """This rank's block of the first stage's input at each step.

    Parameters
    ----------
    dataset : ImageSource
        The training samples.
    network : Network
        Its grid is the replica's ranks; its :attr:`~Network.preprocess` (when set) is
        applied to every sample.
    share : int
        Samples of the replica's share of each step's batch.
    first : int
        Index of the share's first sample in the global batch (replica * share).
    prefetch : bool
        Prepare the next batch in a background thread.

    Collective to build (one plan over the replica's ranks).
    """

    def __init__(self, dataset: ImageSource, network: Network, share: int, first: int = 0, prefetch: bool = True):
        grid = network.grid
        self.dataset, self.network = dataset, network
        counts = balanced_blocks(share, grid.size)
        lo = first + sum(counts[:grid.rank])
        self.indices = range(lo, lo + counts[grid.rank])  # the samples this rank draws
        self.line = da.ProcessGrid((grid.size,), grid.comm)  # the same ranks in the same order
        h, w, c = network.input_shape
        self.layout = network.input_layout(share)
        self.samples_layout = Layout.create((h, w, c, share), (grid.size,), split=(None, None, None, 0),
                                            dtype=self.layout.dtype, blocks=(None, None, None, counts))
        self.plan = FetchPlan(self.line, self.samples_layout, self.layout.box(grid.rank))
        self.xp = network.stages[0].encoder.xp
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cots-prefetch") if prefetch else None
        self._ahead: tuple[int, Future] | None = None
        self._reported: set[str] = set()  # skipped files this rank has announced
        self._known: set[str] = set()  # skipped files any rank has announced

    def prepare(self, step: int) -> np.ndarray:
        """This rank's samples of batch ``step``, normalised and preprocessed: (H, W, C, n) in
        the network's dtype (local: no MPI; what the prefetch thread runs)."""
        samples = self.dataset.samples(step, self.indices)  # (n, H, W, C)
        images = np.ascontiguousarray(samples.transpose(1, 2, 3, 0))  # (H, W, C, n)
        preprocess = self.network.preprocess
        if preprocess is not None and images.shape[3]:
            images = preprocess.apply(images)
        return np.ascontiguousarray(images, dtype=self.layout.dtype)

    def __call__(self, step: int, next_step: int | None = None) -> da.DistArray:
        """Collective: this rank's block of batch ``step`` in the first stage's layout; with
        ``next_step``, start preparing that batch in the background."""
        local, error = None, None
        try:  # a file that cannot be read on one rank must stop every rank, not leave them waiting
            if self._ahead is not None and self._ahead[0] == step:
                local = self._ahead[1].result()
            else:
                self.drop()
                local = self.prepare(step)
        except (OSError, ValueError) as exc:
            error = exc if isinstance(exc, ValueError) else ValueError(str(exc))
        self._ahead = None
        try:
            comm.agree(self.line.comm, error)
        except ValueError as exc:
            raise DataError(f"cannot draw the batch of step {step}: {exc}") from None
        if next_step is not None and self._pool is not None:
            self._ahead = (next_step, self._pool.submit(self.prepare, next_step))
        held = da.DistArray(local, self.samples_layout, self.line)
        self.plan.begin(held, check=False)
        block = self.plan.end()  # (rows, cols, C, share) of this rank's box
        return da.DistArray(self.xp.ascontiguousarray(self.xp.asarray(block)), self.layout, self.network.grid)

    def drop(self) -> None:
        """Forget a batch prepared ahead (waiting for its thread to finish it; an error it
        met is dropped with it: the batch is prepared again, and fails again, when asked for)."""
        if self._ahead is not None:
            self._ahead[1].exception()
            self._ahead = None

    def skipped(self) -> list[str]:
        """Collective: every file the ranks have skipped as unreadable so far (sorted; empty
        for sources that skip nothing). Each rank sends only the names it has not sent before."""
        found = getattr(self.dataset, "skipped", None)
        if found is None:  # a source that never skips: the same on every rank, no message needed
            return []
        new = sorted(found.copy() - self._reported)  # copy(): atomic, while the prefetch thread may add
        self._reported.update(new)
        for names in comm.allgather(self.line.comm, new):
            self._known.update(names)
        return sorted(self._known)

    def close(self) -> None:
        """Stop the prefetch thread."""
        self.drop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
