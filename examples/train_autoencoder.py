"""Train one sparse-autoencoder stage (reconstruction TICA, Le et al. 2012) with the Python API.

Run on 2 ranks (each owns half of the output locations and their weights)::

    OMP_NUM_THREADS=1 mpiexec -n 2 python -m mpi4py examples/train_autoencoder.py

The same script runs on one process (``python examples/train_autoencoder.py``) and trains
the same weights to float rounding. ``cots train`` does all of this from a TOML file, with
checkpoints and metrics (docs/training.md); this script shows the pieces.
"""

from __future__ import annotations

import argparse

import numpy as np

import distarray as da
from distarray import comm
from models.autoencoder import SparseAutoencoder
from models.data import BundledImages
from models.optim import SGD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=24, help="image side (default 24)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.001)
    args = parser.parse_args()
    root = comm.world().Get_rank() == 0

    # a 2-D grid of ranks shaped for the image; every layer splits its output locations over it
    grid = da.ProcessGrid.for_shape((args.size, args.size))
    stage = SparseAutoencoder((args.size, args.size, 3), maps=8, k=8, pool=3, grid=grid, lam=0.1, seed=0)
    optimizer = SGD(stage.parameters(), momentum=0.9)
    images = BundledImages((args.size, args.size), channels=3, seed=0)
    layout = stage.encoder.input_layout(args.batch)
    box = layout.box(grid.rank)  # this rank's part of every batch
    if root:
        print(f"{comm.world().Get_size()} rank(s), grid {grid.dims}; {images.describe()}")

    for step in range(args.steps):
        batch = images.batch(step, args.batch)  # (H, W, C, B), the same on every rank
        x = da.DistArray(np.ascontiguousarray(batch[box.slices()]), layout, grid)
        losses, _ = stage.forward(x)  # collective; the same floats on every rank
        stage.backward()  # gradients of the weights this rank owns
        optimizer.step(stage.gradients(), lr=args.lr)  # local: no gradient all-reduce
        if root and (step % 25 == 0 or step == args.steps - 1):
            print(f"step {step:4d}  reconstruction {losses.reconstruction:9.3f}  sparsity {losses.sparsity:8.3f}")

    norm = stage.encoder.weight.norm()  # collective
    if root:
        print(f"done: |W1| = {norm:.6f}")


if __name__ == "__main__":
    main()
