"""From a configuration to what runs it: the grid of ranks (and the replicas), the array
backend, the network and the data source. The trainer, ``cots neurons`` and ``cots plan``
all start here, so a configuration means the same thing to each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import distarray as da
from distarray import comm

from .config import Config
from .data import FileIndex, ImageSource, make_dataset
from .data.factory import check_spec
from .data.index import load_table, save_table
from .data.shards import MEMBERS_SUFFIX, SHARD_SUFFIXES, join_shards, list_shards, table_key
from .data.video import FRAMES_SUFFIX
from .network import Network
from .preprocess import LocalContrast, Preprocess, estimate_whitening

__all__ = ["INDEX_FILE", "INDEX_FILES", "Placement", "WHITEN_IMAGES", "WHITEN_STEP", "build_dataset", "build_network", "build_preprocess",
           "grid_dims", "place", "preprocess_from_meta"]

WHITEN_STEP = 2**41  # the whitening is estimated on the data source's batch at this step (never trained on)
WHITEN_IMAGES = 256  # ... of this many images


def grid_dims(config: Config, ranks: int, strict: bool = True) -> tuple[int, int]:
    """The (rows, cols) grid of ``ranks`` ranks: ``run.grid``, or a balanced one for "auto"
    (pure). With ``strict`` a ``run.grid`` of another size is a ValueError; without, it gives
    way to a balanced grid (analysis loads a run at any rank count)."""
    h, w, _ = config.model.input
    dims = config.run.grid
    if dims is not None and int(np.prod(dims)) == ranks:
        return dims
    if dims is not None and strict:
        raise ValueError(f"expected run.grid with {ranks} ranks per replica, got {list(dims)}")
    return tuple(da.factor_grid(ranks, (h, w)))


@dataclass
class Placement:
    """Where this rank stands in a job of ``replicas`` model-parallel groups.

    Attributes
    ----------
    grid : ProcessGrid
        This rank's group, as a 2-D grid: every layer splits its neurons over it.
    replica, replicas : int
        Which group this rank is in, and how many there are.
    peers : communicator
        The ranks holding this rank's block in every replica (the gradient all-reduce).
    """

    grid: da.ProcessGrid
    replica: int
    replicas: int
    peers: Any


def place(config: Config, world: Any = None, replicas: int | None = None, strict: bool = True) -> Placement:
    """Collective over ``world`` (default COMM_WORLD): split it into ``replicas`` (default
    ``run.replicas``) groups of consecutive ranks, lay each out as a grid (:func:`grid_dims`)
    and, for the cupy backend, give each rank of a node its own GPU."""
    world = comm.world() if world is None else world
    replicas = config.run.replicas if replicas is None else int(replicas)
    size, rank = world.Get_size(), world.Get_rank()
    if size % replicas:
        raise ValueError(f"expected the number of ranks ({size}) divisible by run.replicas ({replicas})")
    per = size // replicas
    dims = grid_dims(config, per, strict)
    replica = rank // per
    group = comm.split(world, replica, rank)
    peers = comm.split(world, rank % per, replica)
    if config.run.backend == "cupy":
        da.use_local_gpu(world)  # ranks on a node spread over its GPUs
    return Placement(da.ProcessGrid(dims, comm=group), replica, replicas, peers)


def build_network(config: Config, grid: da.ProcessGrid) -> Network:
    """Collective over ``grid``: the network a configuration describes, at its initial weights."""
    model = config.model
    return Network(model.input, model.stages, grid, seed=model.seed, dtype=np.dtype(model.dtype),
                   backend_name=config.run.backend)


INDEX_FILE = "data-index.npz"  # a folder, video or shards source's listing, cached in the run directory
INDEX_FILES = (INDEX_FILE, INDEX_FILE + FRAMES_SUFFIX,  # ... and a video source's frame table beside it,
               INDEX_FILE + MEMBERS_SUFFIX)  # or a shards source's member table
LISTED_SOURCES = ("folder", "video")  # listed by one rank and broadcast (shards: by every rank, _listed_shards)


def build_dataset(config: Config, world: Any = None, run_dir: str | Path | None = None) -> ImageSource:
    """The data source of ``[data]``, sized to ``model.input`` and seeded by ``model.seed``.

    With ``world`` (collective over it), a folder or video source is listed by rank 0 alone
    (cached as ``run_dir/data-index.npz`` when ``run_dir`` is given, reused while the folder's
    fingerprint holds) and the listing broadcast, so that N ranks do not walk the tree N
    times; a shards source's member table is read by all ranks, each from its share of the
    shards (:func:`_listed_shards`). An error there (no such folder, no image) is raised on
    every rank together. Without ``world``: local, listed here.
    """
    h, w, channels = config.model.input
    spec = config.data.as_dict()
    cache = None if run_dir is None else Path(run_dir) / INDEX_FILE
    if world is not None and check_spec(spec) == "shards":
        return make_dataset(spec, (h, w), channels, config.model.seed, listing=_listed_shards(spec, world, cache))
    if world is None or spec.get("source") not in LISTED_SOURCES:
        return make_dataset(spec, (h, w), channels, config.model.seed, cache=cache)
    dataset, error = None, None
    if world.Get_rank() == 0:
        try:
            dataset = make_dataset(spec, (h, w), channels, config.model.seed, cache=cache)
        except (OSError, ValueError) as exc:
            error = exc if isinstance(exc, ValueError) else ValueError(str(exc))
    comm.agree(world, error)
    listing = comm.broadcast(world, dataset.listing() if dataset is not None else None)
    return dataset if dataset is not None else make_dataset(spec, (h, w), channels, config.model.seed, listing=listing)


def _listed_shards(spec: dict[str, Any], world: Any, cache: Path | None) -> dict[str, Any]:
    """Collective: a shards source's listing. Rank 0 lists the shards (or reads the cached
    index) and reads a cached member table; when there is none to reuse, every rank reads
    the headers of every N-th shard and the parts are gathered in shard order (rank 0
    caches the result), so N ranks list N times faster. Errors are raised on every rank."""
    on_error = spec.get("on_error", "raise")
    stored = None if cache is None else Path(str(cache) + MEMBERS_SUFFIX)
    index, table, key, error = None, None, None, None
    if world.Get_rank() == 0:
        try:
            index = FileIndex.cached(spec["path"], SHARD_SUFFIXES, cache)
            key = table_key(index, on_error)
            table = load_table(stored, key)
        except (OSError, ValueError) as exc:
            error = exc if isinstance(exc, ValueError) else ValueError(str(exc))
    comm.agree(world, error)
    index, table = comm.broadcast(world, (index, table))
    if table is None:
        rank, ranks = world.Get_rank(), world.Get_size()
        found, error = [], None
        try:
            found = list_shards(index, on_error, range(rank, len(index), ranks))
        except ValueError as exc:
            error = exc
        comm.agree(world, error)
        parts = comm.allgather(world, found)
        table = join_shards([parts[v % ranks][v // ranks] for v in range(len(index))])
        if rank == 0 and stored is not None:
            save_table(stored, key, table)
    return {"index": index, "table": table}


def build_preprocess(config: Config, dataset: ImageSource, world: Any) -> Preprocess | None:
    """Collective over ``world``: the input preprocessing ``[model]`` asks for (None when
    ``input_lcn`` and ``whiten`` are both 0): LCN, then a ZCA whitening that rank 0 estimates
    from :data:`WHITEN_IMAGES` training images (after the LCN) and broadcasts, so every rank
    applies the same bits."""
    model = config.model
    if not model.input_lcn and not model.whiten:
        return None
    table = None
    if world.Get_rank() == 0:
        steps: list = [LocalContrast(model.input_lcn, model.input_lcn / 4.0)] if model.input_lcn else []
        if model.whiten:
            images = dataset.batch(WHITEN_STEP, WHITEN_IMAGES)  # (H, W, C, N)
            if steps:
                images = Preprocess(tuple(steps)).apply(images)
            steps.append(estimate_whitening(images, model.whiten, model.whiten_eps, seed=model.seed))
        table = Preprocess(tuple(steps)).as_dict()
    return Preprocess.from_dict(comm.broadcast(world, table))


def preprocess_from_meta(config: Config, meta: dict[str, Any]) -> Preprocess | None:
    """The preprocessing a checkpoint's metadata stores (None when its model has none; the
    same metadata on every rank, so all raise together)."""
    table = meta.get("preprocess")
    if not config.model.whiten and not config.model.input_lcn:
        return None
    if table is None:
        raise ValueError(f"checkpoint of a model with model.input_lcn = {config.model.input_lcn} and model.whiten = "
                         f"{config.model.whiten} stores no preprocessing")
    return Preprocess.from_dict(table)
