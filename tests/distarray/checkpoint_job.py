"""Helper of test_checkpoint.py: save or load a checkpoint of fixed arrays at any rank count.

::

    mpiexec -n 4 python -m mpi4py tests/distarray/checkpoint_job.py save DIR 2,2
    mpiexec -n 3 python -m mpi4py tests/distarray/checkpoint_job.py load DIR 1,3

The global arrays depend on nothing but their shapes, so they are the same at any rank count;
``DIMS`` is the grid of the 2-D-split arrays (the others use a 1-D grid of every rank). A
load checks every rank's blocks against the global arrays and the meta; any error raises,
which under ``python -m mpi4py`` ends the job with a non-zero exit code.
"""

from __future__ import annotations

import sys

import numpy as np

import distarray as da
from distarray import comm
from distarray.checkpoint import load_checkpoint, save_checkpoint

META = {"step": 7, "config": {"lr": 0.01, "sizes": [5, 7]}, "rng": [1, 2, 3], "note": "ok"}


def global_arrays() -> dict[str, tuple[np.ndarray, str, tuple | None]]:
    """name -> (global array, "2d" or "1d" grid, split)."""
    return {
        "w": (np.arange(5 * 7 * 3 * 2, dtype=np.float32).reshape(5, 7, 3, 2) / 4, "2d", (0, 1, None, None)),
        "v": (np.arange(9 * 11, dtype=np.int32).reshape(9, 11) - 40, "2d", (1, 0)),  # axes over grid dims 1, 0
        "b": (np.arange(13, dtype=np.float64) / 3, "1d", None),
        "c": (np.arange(4 * 5 * 6, dtype=np.float64).reshape(4, 5, 6), "1d", (None, None, 0)),
    }


def main(argv: list[str]) -> None:
    mode, directory, dims = argv[0], argv[1], tuple(int(d) for d in argv[2].split(","))
    grids = {"2d": da.ProcessGrid(dims), "1d": da.ProcessGrid()}
    wanted = global_arrays()
    if mode == "save":
        arrays = {n: da.from_global(g, grids[k], split=s) for n, (g, k, s) in wanted.items()}
        save_checkpoint(directory, arrays, META)
        return
    arrays = {n: da.full(g.shape, grids[k], -7, split=s, dtype=g.dtype) for n, (g, k, s) in wanted.items()}
    meta = load_checkpoint(directory, arrays)
    rank = comm.world().Get_rank()
    assert meta == META, f"rank {rank}: meta {meta} != {META}"
    for n, (g, _, _) in wanted.items():
        box = arrays[n].box
        if not np.array_equal(arrays[n].local, g[box.slices()]):
            raise AssertionError(f"rank {rank}: array {n!r} block {box} differs from the global array")
    print(f"rank {rank}: loaded ok", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
