"""Streaming image folders at scale: memory per rank against the number of images, time to the
first batch, and sustained samples/s against the training step rates.

Run (one process; it launches the measurements itself under mpiexec):

    python benchmarks/bench_data.py                       # 100,000 JPEGs, about 3 minutes
    python benchmarks/bench_data.py --images 10000 --out /tmp/data.json
    python benchmarks/bench_data.py --source shards       # the same JPEGs in tar shards of 1,000

The driver writes ``--images`` small JPEGs (64 x 64 RGB, smooth random content, about 2 KB
each) once into ``--folder`` (default /tmp/cots-bench-jpegs), in a tree of 1,000-file
folders: ``d{k // 10000}/d{k // 1000 % 10}/{k}.jpg``, so that ``d0/d0`` holds 1,000 images,
``d0`` 10,000 and the root all of them. For each of those folders it launches a fresh 2-rank
worker (one thread each) that builds the source as the trainer does (rank 0 lists the folder,
writes the index cache into a fresh run directory, broadcasts it), then draws batches of 32
samples, each rank its half (``ImageSource.samples``), for the demo input (32 x 32 x 3) and
Le et al.'s (200 x 200 x 3). It records per rank the peak resident memory (``ru_maxrss``), the
index's bytes, the seconds to the first batch (construction to the first share drawn) and the
samples/s over ``--batches`` batches. A second launch on the same folder reuses the cached
index (``first_batch_cached_s``).

With ``--source shards`` (results in ``benchmarks/results/data_shards.json``) the same JPEGs
are packed once, in order, into uncompressed tar shards of 1,000 by ``cots pack``'s writer
(``--shards``, default /tmp/cots-bench-shards: ``d{j // 10}/d{j % 10}/shard-{j:06d}.tar`` for
shard j, the same tree one level up), and the workers train from ``data.source = "shards"``;
``index_bytes`` then counts the shard index and the member table.

Step rates to compare with: ``benchmarks/results/train.json`` (the demo at 2 ranks, if
present) and le2012's 3.42 s per step at 2 ranks for stage 0, batch 32 (docs/benchmarks.md,
2026-11-21): a source keeps up when its samples/s at 2 ranks exceeds batch / seconds per step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import header, write_result  # beside this script (sys.path[0] when run as a file)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "data.json"
SIZES = {"demo_32x32x3": (32, 32), "le2012_200x200x3": (200, 200)}
LE2012_STAGE0_S_PER_STEP = 3.42  # docs/benchmarks.md, 2 ranks, 2026-11-21
BATCH = 32
TABLES = ("starts", "sizes", "offsets")  # a shards source's member table, held beside its index


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="JPEGs in the generated folder")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "cots-bench-jpegs")
    parser.add_argument("--source", choices=("folder", "shards"), default="folder",
                        help="read the JPEGs from the folder tree, or packed in tar shards")
    parser.add_argument("--shards", type=Path, default=Path(tempfile.gettempdir()) / "cots-bench-shards")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per sample size")
    parser.add_argument("--out", type=Path, help=f"JSON file (default {DEFAULT_OUT.name}, or data_shards.json)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per worker launch")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def write_jpegs(folder: Path, count: int) -> float:
    """Write the missing ones of ``count`` JPEGs; returns the seconds it took."""
    import numpy as np
    from PIL import Image

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for k in range(count):
        file = folder / f"d{k // 10000}" / f"d{k // 1000 % 10}" / f"{k}.jpg"
        if file.exists():
            continue
        file.parent.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, size=(8, 8, 3)).astype(np.uint8)
        Image.fromarray(coarse).resize((64, 64), Image.Resampling.BICUBIC).save(file, quality=85)
    return time.perf_counter() - start


def write_shards(folder: Path, shards: Path, count: int) -> float:
    """Pack the JPEGs of :func:`write_jpegs` into the missing ones of ``count // 1000`` shards
    of 1,000 with ``cots pack``'s writer (models.data.shards.pack: files in a folder source's
    order), shard j into ``shards/d{j // 10}/d{j % 10}/``; returns the seconds it took."""
    from models.data.index import FileIndex
    from models.data.readers import IMAGE_SUFFIXES
    from models.data.shards import pack, shard_name

    start = time.perf_counter()
    index = FileIndex.scan(folder, IMAGE_SUFFIXES)
    for j in range(count // 1000):
        out = shards / f"d{j // 10}" / f"d{j % 10}"
        if not (out / shard_name(j)).exists():
            out.mkdir(parents=True, exist_ok=True)
            pack(index, out, 1000, [j])
    return time.perf_counter() - start


def worker(args: argparse.Namespace) -> dict | None:
    """Collective (2 ranks): build the folder source as the trainer does, time the draws."""
    from distarray import comm
    from distarray.layout import balanced_blocks
    from models.build import INDEX_FILES, build_dataset
    from models.config import parse_config

    world = comm.world()
    rank, ranks = world.Get_rank(), world.Get_size()
    mine = range(*[sum(balanced_blocks(BATCH, ranks)[:r]) for r in (rank, rank + 1)])
    out = {}
    for name, size in SIZES.items():
        config = parse_config({"model": {"input": [*size, 3], "stages": [{"k": 8, "maps": 2, "pool": 2}]},
                               "data": {"source": args.source, "path": str(args.worker)}})
        comm.barrier(world)
        start = time.perf_counter()
        source = build_dataset(config, world, args.run_dir)
        source.samples(0, mine)
        first = time.perf_counter() - start
        comm.barrier(world)
        start = time.perf_counter()
        for step in range(1, args.batches + 1):
            source.samples(step, mine)
        drawn = time.perf_counter() - start
        comm.barrier(world)
        elapsed = time.perf_counter() - start  # the slowest rank's
        out[name] = {"first_batch_s": comm.allgather(world, first), "draw_s": comm.allgather(world, drawn),
                     "samples_per_s": BATCH * args.batches / elapsed, "images": len(source),
                     "index_bytes": source.index.nbytes + sum(getattr(source, name).nbytes for name in TABLES
                                                             if hasattr(source, name))}
    rss = comm.allgather(world, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # MiB (Linux: KiB)
    if rank != 0:
        return None
    cached = sum((args.run_dir / name).stat().st_size for name in INDEX_FILES if (args.run_dir / name).is_file())
    return {"ranks": ranks, "peak_rss_mib": rss, "sizes": out, "index_file_bytes": cached}


def launch(args: argparse.Namespace, folder: Path, run_dir: Path) -> dict:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    command = [str(mpiexec if mpiexec.exists() else "mpiexec"), "-n", "2", sys.executable, "-m", "mpi4py",
               str(Path(__file__).resolve()), "--worker", str(folder), "--run-dir", str(run_dir),
               "--batches", str(args.batches), "--source", args.source]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"worker failed (exit {done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def demo_step_rate() -> float | None:
    """Samples/s of the demo's training at 2 ranks (greedy stage 0) in train.json, if there."""
    try:
        train = json.loads((ROOT / "benchmarks" / "results" / "train.json").read_text())
        return float(train["greedy_stage0"]["ranks2"]["samples_per_s"])
    except (OSError, KeyError, ValueError):
        return None


def main(args: argparse.Namespace) -> None:
    load_start = os.getloadavg()[0]
    written = write_jpegs(args.folder, args.images)
    packed = write_shards(args.folder, args.shards, args.images) if args.source == "shards" else None
    counts = [n for n in (1000, 10_000, 100_000) if n <= args.images]
    top = args.folder if args.source == "folder" else args.shards
    folders = {1000: top / "d0" / "d0", 10_000: top / "d0", 100_000: top}
    rows = {}
    with tempfile.TemporaryDirectory() as runs:
        for n in counts:
            run_dir = Path(runs) / f"run{n}"
            fresh = launch(args, folders[n], run_dir)
            cached = launch(args, folders[n], run_dir)
            rows[str(n)] = {**fresh, "first_batch_cached_s": {k: v["first_batch_s"] for k, v in cached["sizes"].items()},
                            "index_file_bytes": fresh["index_file_bytes"]}
            print(f"{n:>7} images: peak RSS {max(fresh['peak_rss_mib']):.0f} MiB per rank, index "
                  f"{fresh['sizes']['demo_32x32x3']['index_bytes'] / 2**20:.2f} MiB; first batch "
                  f"{max(fresh['sizes']['demo_32x32x3']['first_batch_s']):.2f} s "
                  f"({max(rows[str(n)]['first_batch_cached_s']['demo_32x32x3']):.2f} s cached); "
                  + ", ".join(f"{k} {v['samples_per_s']:.0f} samples/s" for k, v in fresh["sizes"].items()),
                  flush=True)
    small, large = str(counts[0]), str(counts[-1])
    growth = (max(rows[large]["peak_rss_mib"]) - max(rows[small]["peak_rss_mib"])) / (int(large) - int(small)) * 1e5
    demo_rate = demo_step_rate()
    le_rate = BATCH / LE2012_STAGE0_S_PER_STEP
    result = {
        **header("data"), "source": args.source, "images": args.images, "image_size": [64, 64, 3],
        "jpeg_write_s": written, "shard_write_s": packed,
        "batch": BATCH, "batches": args.batches, "ranks": 2, "threads_per_rank": 1, "by_count": rows,
        "rss_growth_mib_per_100k_images": growth,
        "index_mib_per_100k_images": rows[large]["sizes"]["demo_32x32x3"]["index_bytes"] / 2**20 / int(large) * 1e5,
        "step_rates_samples_per_s": {"demo_2ranks_train_json": demo_rate, "le2012_stage0_2ranks": le_rate},
        "keeps_up": {"demo": None if demo_rate is None else rows[large]["sizes"]["demo_32x32x3"]["samples_per_s"] > demo_rate,
                     "le2012": rows[large]["sizes"]["le2012_200x200x3"]["samples_per_s"] > le_rate},
        "loadavg_1min_start_end": [load_start, os.getloadavg()[0]],
        "notes": "peak_rss_mib: ru_maxrss of each rank after both sizes were drawn; first_batch_s: building the "
                 "source (rank 0 lists, broadcast) and drawing the first share, per rank; samples_per_s: "
                 "batch * batches / the slowest rank's seconds, the two ranks drawing halves at once.",
    }
    print(f"RSS growth {growth:.1f} MiB per 100k images (index {result['index_mib_per_100k_images']:.2f} MiB); "
          f"step rates: demo {demo_rate}, le2012 {le_rate:.1f} samples/s")
    write_result(args.out or (DEFAULT_OUT if args.source == "folder" else DEFAULT_OUT.with_name("data_shards.json")),
                 result)


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.worker is None:
        main(ARGS)
    else:
        found = worker(ARGS)
        if found is not None:
            print(json.dumps(found), flush=True)
