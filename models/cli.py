"""The ``cots`` command. Run under mpiexec for several ranks:

    mpiexec -n 4 cots info
    mpiexec -n 2 cots train configs/demo.toml --out runs/demo
    mpiexec -n 2 cots neurons runs/demo
    cots plan configs/le2012.toml --ranks 2 --gpu-mem 12
    cots export runs/demo --format safetensors
    mpiexec -n 4 cots pack /data/frames --out /data/shards
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main"]


#: What a run directory's earlier run produced besides the data index (:func:`run_outputs`).
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "loss.png", "curves.png", "train.log", "config.toml", "report.html",
               "report", "neurons.json")


def run_outputs() -> tuple[str, ...]:
    """Everything ``cots train --fresh`` deletes: training's outputs, `cots neurons`'s
    (report.html, report/, neurons.json) and the data index (:data:`models.build.INDEX_FILES`)."""
    from .build import INDEX_FILES

    return RUN_OUTPUTS + INDEX_FILES


class UsageError(Exception):
    """Bad input found on every rank alike: reported once, exit status 2."""


class RunError(Exception):
    """A failure during a run raised on every rank together (an unreadable training file):
    reported once, exit status 1."""


def _info(args: argparse.Namespace) -> int:
    """Print what this installation runs on: versions, MPI, ranks, backends (collective)."""
    import numpy as np

    import distarray
    from distarray import comm

    world = comm.world()
    names = comm.allgather(world, __import__("platform").node())
    if world.Get_rank() == 0:
        print(f"cots-hpc {distarray.__version__}  (numpy {np.__version__})")
        print(f"MPI library      {comm.library_version()}")
        print(f"ranks            {world.Get_size()} on {len(set(names))} node(s)")
        print(f"array backends   {', '.join(distarray.available_backends())}")
        if distarray.gpu_available():
            print(f"CUDA-aware MPI   {'yes' if comm.cuda_aware() else 'no (staged through host)'}")
    return 0


def _train(args: argparse.Namespace) -> int:
    """Train a configuration (collective: run on every rank under mpiexec)."""
    import os
    import shutil
    import signal
    from pathlib import Path

    from distarray import comm
    from distarray.checkpoint import CheckpointError

    from .config import load_config
    from .data import DataError
    from .logs import add_file, logger
    from .training.checkpoints import checkpoint_path
    from .training.guard import NonFiniteError
    from .training.trainer import Trainer

    try:
        config = load_config(args.config, args.set)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    if args.print_config:
        if comm.world().Get_rank() == 0:
            print(config.to_toml(), end="")
        return 0
    if args.resume and args.fresh:
        raise UsageError("expected --resume (continue the run) or --fresh (delete it and start again), not both")
    if args.until is not None and args.until < 1:
        raise UsageError(f"expected --until STEP >= 1 (steps counted over all stages), got {args.until}")
    run_dir = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    world = comm.world()
    root = world.Get_rank() == 0
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} is a file: expected a directory (or a path that does not exist yet)")
    old = sorted((run_dir / "checkpoints").glob("step-*")) if (run_dir / "checkpoints").is_dir() else []
    if old and not (args.resume or args.fresh):
        raise UsageError(f"{run_dir} already holds checkpoints ({old[-1].name}); pass --resume to continue "
                         f"that run, --fresh to delete its outputs and start again, or another --out")
    comm.barrier(world)  # every rank has looked before rank 0 deletes anything
    problem = None
    if root:
        try:
            if args.fresh:
                for name in run_outputs():
                    target = run_dir / name
                    shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            problem = f"cannot write to the run directory {run_dir}: {exc.strerror or exc}"
    problem = comm.broadcast(world, problem)
    if problem:
        raise UsageError(problem)
    try:  # errors of configuration found while building (sizes, data, a checkpoint) arise on every rank
        trainer = Trainer(config, run_dir, progress=not args.quiet)
        step = trainer.resume() if args.resume else 0
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    except RuntimeError as exc:
        if config.run.backend != "cupy":
            raise
        raise UsageError(f"{exc}: run.backend = \"cupy\" needs CuPy and a GPU on every rank "
                         f"(pip install 'cots-hpc[gpu]'), or set run.backend = \"numpy\"") from None
    if args.until is not None and args.until <= step:
        raise UsageError(f"--until {args.until} is not after step {step}, where the run stands: nothing to run; "
                         f"pass a later step")
    if root:
        add_file(run_dir / "train.log", args.log_level, 0, world.Get_size())
    log = logger("train")
    if args.resume:
        log.info(f"resuming {run_dir} at step {step}" if step else f"no checkpoint in {run_dir}: starting at step 0")
    if root:
        counts = trainer.network.parameter_count()
        log.info(f"cots train: {len(trainer.network)} stage(s), {counts['encoder']:,} encoder + "
              f"{counts['decoder']:,} decoder weights; {comm.world().Get_size()} rank(s) as "
              f"{trainer.replicas} replica(s) of grid {list(trainer.grid.dims)}; data: {trainer.dataset.describe()}")
    try:
        records = trainer.run(until=args.until)
    except (DataError, NonFiniteError, CheckpointError) as exc:  # raised on every rank together
        raise RunError(str(exc)) from None
    if trainer.stopped_by:  # a signal: the step finished, a checkpoint written
        if root:
            log.warning(f"cots train: stopped by {trainer.stopped_by} after step {trainer.step - 1}: checkpoint "
                        f"{checkpoint_path(run_dir, trainer.step)} written; continue with the same command and "
                        f"--resume")
        return 128 + int(getattr(signal, trainer.stopped_by))
    if root:
        done = "finished" if trainer.step >= trainer.total_steps else f"stopped at step {trainer.step}"
        last = f", last loss {records[-1]['loss']:.5g}" if records else ""
        made = [n for n in ("config.toml", "metrics.jsonl", "train.log", "loss.png", "curves.png", "tensorboard")
                if (run_dir / n).exists()]
        log.info(f"{done}{last}. Outputs in {run_dir}/: {', '.join(made)}, checkpoints/")
    return 0


def _neurons(args: argparse.Namespace) -> int:
    """Find, score and draw a run's most face-selective neurons (collective)."""
    from .analysis.run import analyse_run
    from .logs import logger

    try:
        analyse_run(args.run_dir, out=args.out, positives=args.positives, negatives=args.negatives, stage=args.stage,
                    layer=args.layer, checkpoint=args.checkpoint, best=args.best, pool=args.pool,
                    stimulus_steps=args.stimulus_steps, seed=args.seed,
                    log=None if args.quiet else logger("neurons").info)
    except (ValueError, FileNotFoundError) as exc:  # found alike on every rank: the run, the images, the layer
        raise UsageError(str(exc)) from None
    return 0


def _export(args: argparse.Namespace) -> int:
    """Write a run's parameters as npz or safetensors (rank 0 alone reads and writes)."""
    from pathlib import Path

    from distarray import comm
    from distarray.checkpoint import CheckpointError

    from .export import export_checkpoint
    from .logs import logger
    from .training.checkpoints import latest_checkpoint

    world = comm.world()
    run_dir = Path(args.run_dir)
    checkpoint = Path(args.checkpoint) if args.checkpoint else latest_checkpoint(run_dir)
    out = Path(args.out) if args.out else run_dir / f"parameters.{args.format}"
    if checkpoint is None:
        raise UsageError(f"expected a run directory with checkpoints/, got {run_dir} (no complete checkpoint)")
    if out.is_dir() or not out.parent.is_dir():
        raise UsageError(f"expected --out to be a file in an existing folder, got {out}")
    error = None
    if world.Get_rank() == 0:
        log = (lambda line: None) if args.quiet else logger("export").info
        log(f"cots export: {checkpoint} -> {out} ({args.format})")
        try:
            export_checkpoint(checkpoint, out, args.format, log=log)
        except (CheckpointError, OSError, ValueError) as exc:
            error = str(exc)
    error = comm.broadcast(world, error)
    if error is not None:
        raise RunError(error)
    return 0


def _crops(args: argparse.Namespace) -> int:
    """Cut unaligned faces and distractors from photos with face boxes (rank 0 alone writes)."""
    from distarray import comm

    from .analysis.box_crops import write_set

    world = comm.world()
    if not 0 < args.scale[0] <= args.scale[1]:
        raise UsageError(f"expected --scale LOW HIGH with 0 < LOW <= HIGH, got {args.scale}")
    error = None
    if world.Get_rank() == 0:
        try:
            record = write_set(args.annotations, args.out, seed=args.seed, scale=tuple(args.scale), shift=args.shift,
                               negatives_per_face=args.negatives_per_face, margin=args.margin)
            print(f"cots crops: {record['positives']} faces and {record['negatives']} distractors from "
                  f"{record['photos']} photos in {args.out}/positives and {args.out}/negatives")
        except (ValueError, OSError) as exc:
            error = str(exc)
    error = comm.broadcast(world, error)
    if error is not None:
        raise UsageError(error)
    return 0


def _pack(args: argparse.Namespace) -> int:
    """Pack an image folder into tar shards, the ranks writing every N-th shard (collective)."""
    from distarray import comm

    from .pack import pack_folder

    world = comm.world()
    try:
        record = pack_folder(args.folder, args.out, args.per_shard, world)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if world.Get_rank() == 0:
        print(f"cots pack: {record['images']} images from {args.folder} in {record['shards']} shards in {args.out}; "
              f"train on them with --set 'data={{source=\"shards\", path=\"{args.out}\"}}'")
    return 0


def _plan(args: argparse.Namespace) -> int:
    """Plan a configuration on N ranks from shapes alone; or measure this machine (collective)."""
    import json
    from pathlib import Path

    from distarray import comm

    from .config import load_config
    from .planning.planner import format_plan, plan_network, suggest_grids
    from .planning.profile import Rates, calibrate

    root = comm.world().Get_rank() == 0
    profile = Path(args.profile)
    if args.calibrate:
        if not args.calibrate_mib > 0:
            raise UsageError(f"expected --calibrate-mib > 0, got {args.calibrate_mib:g}")
        rates = calibrate(block_bytes=max(1, int(args.calibrate_mib * 2**20)))
        if root:
            rates.save(profile)
            print(f"cots plan: measured {rates.source}: GEMM {rates.gemm_flops / 1e9:.1f} GFLOP/s per rank, memory "
                  f"{rates.memory_bw / 1e9:.1f} GB/s, network {rates.network_bw / 1e9:.2f} GB/s, latency "
                  f"{rates.latency * 1e6:.1f} us; saved to {profile}")
        if args.config is None:
            return 0
    if args.config is None or args.ranks is None:
        raise UsageError("expected a configuration and --ranks N (or --calibrate alone)")
    sizes = {"--ranks": args.ranks, "--gpu-mem": args.gpu_mem, "--batch": args.batch, "--gemm-gflops": args.gemm_gflops,
             "--mem-gbps": args.mem_gbps, "--net-gbps": args.net_gbps, "--latency-us": args.latency_us}
    for flag, value in sizes.items():
        if value is not None and not value > 0:
            raise UsageError(f"expected {flag} > 0, got {value:g}")
    try:
        config = load_config(args.config, args.set)
        flags = [args.gemm_gflops, args.mem_gbps, args.net_gbps, args.latency_us]
        if all(v is not None for v in flags):
            rates = Rates(args.gemm_gflops * 1e9, args.mem_gbps * 1e9, args.net_gbps * 1e9, args.latency_us * 1e-6,
                          source="flags")
        elif any(v is not None for v in flags):
            raise ValueError("expected all of --gemm-gflops, --mem-gbps, --net-gbps and --latency-us, or none")
        else:
            rates = Rates.load(profile) if profile.is_file() else None
        try:
            grid = None if args.grid is None else [int(n) for n in args.grid.lower().split("x")]
        except ValueError:
            raise ValueError(f"expected --grid AxB (for example 2x4), got {args.grid!r}") from None
        plan = plan_network(config, args.ranks, grid, args.batch, args.gpu_mem, rates)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    status = 1 if plan.fits is False else 0  # the same on every rank
    if not root:
        return status
    print(f"cots plan {args.config}:")
    print(format_plan(plan, rates))
    if rates is None:
        print(f"no step time: no machine profile at {profile} (run `cots plan --calibrate`, or pass the four "
              "rate flags)")
    if plan.fits is False:
        found = suggest_grids(config, args.gpu_mem, batch=args.batch)
        print("does not fit: " + ("; ".join(f"{n} ranks as grid {list(g)} need {b / 2**30:.2f} GiB per rank"
                                              for n, g, b in found) if found else "no grid up to 4096 ranks fits"))
    if args.json:
        out = plan.as_dict() | {"config": str(args.config), "rates": None if rates is None else vars(rates)}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"plan written to {args.json}")
    return status


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    """RUN and --checkpoint, as the commands that read a trained run take them."""
    parser.add_argument("run_dir", metavar="RUN", help="a training run directory (with checkpoints/)")
    parser.add_argument("--checkpoint", metavar="DIR", help="a checkpoint directory (default: the run's newest)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cots``."""
    from distarray import __version__

    from .logs import LEVELS

    parser = argparse.ArgumentParser(
        prog="cots", description="Locally connected networks split across GPUs and machines."
    )
    parser.add_argument("--version", action="version", version=f"cots-hpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="show versions, MPI library, ranks and array backends")
    info.set_defaults(run=_info)
    train = sub.add_parser("train", help="train a network from a TOML configuration (under mpiexec)",
                           description="Train a configuration; run as `mpiexec -n N cots train CONFIG.toml`.")
    train.add_argument("config", help="the TOML configuration (see configs/ and docs/training.md)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key, e.g. --set train.lr=0.02 --set model.stages.0.maps=4; an inline "
                            "table replaces a whole table: --set 'data={source=\"folder\", path=\"frames/\"}'")
    train.add_argument("--print-config", action="store_true",
                       help="print the effective configuration (TOML, every default filled in) and exit")
    train.add_argument("--out", help="run directory (default runs/<config name>)")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of the run")
    train.add_argument("--fresh", action="store_true",
                       help="delete what the run directory's earlier run left (checkpoints, metrics, report...) first")
    train.add_argument("--until", type=int, metavar="STEP",
                       help="stop after this step with a checkpoint (for time-limited allocations)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)
    neurons = sub.add_parser(
        "neurons", help="find a run's face-selective neurons and write report.html (under mpiexec)",
        description="Score every neuron of a layer on labelled images with honest selection, compare with "
                    "baselines, draw the best neurons and write RUN/report.html (docs/analysis.md).")
    _run_arguments(neurons)
    neurons.add_argument("--positives", metavar="DIR", help="folder of positive images (default: bundled held-out faces)")
    neurons.add_argument("--negatives", metavar="DIR", help="folder of negative images (with --positives)")
    neurons.add_argument("--out", metavar="DIR", help="where report.html, report/ and neurons.json go (default: RUN)")
    neurons.add_argument("--stage", type=int, help="stage of the layer to analyse (default: the top stage)")
    neurons.add_argument("--layer", choices=("filter", "pool", "norm"),
                         help="layer of that stage (default: its last, norm with LCN)")
    neurons.add_argument("--best", type=int, default=4, help="how many of the best neurons to draw (default 4)")
    neurons.add_argument("--pool", type=int, default=1000,
                         help="unlabelled samples of the run's data added for the top-images figures (default 1000)")
    neurons.add_argument("--stimulus-steps", type=int, default=200, help="gradient ascent steps (default 200)")
    neurons.add_argument("--seed", type=int, default=0, help="split, random filters and stimulus starts (default 0)")
    neurons.add_argument("--quiet", action="store_true", help="print only errors")
    neurons.set_defaults(run=_neurons)
    export = sub.add_parser(
        "export", help="write a run's parameters as global arrays to npz or safetensors",
        description="Stream a checkpoint's parameters, array by array, into one file NumPy, PyTorch or JAX "
                    "read (docs/training.md#exporting-parameters). One process does the work.")
    _run_arguments(export)
    export.add_argument("--format", choices=("npz", "safetensors"), default="npz", help="file format (default npz)")
    export.add_argument("--out", metavar="FILE", help="the file to write (default RUN/parameters.FORMAT)")
    export.add_argument("--quiet", action="store_true", help="print only errors")
    export.set_defaults(run=_export)
    crops = sub.add_parser(
        "crops", help="cut unaligned faces and distractors from photos with face boxes, for cots neurons",
        description="From photos annotated with face boxes (dlib imglab XML), write OUT/positives (each face "
                    "at a random offset and scale) and OUT/negatives (squares of the same sizes where no face "
                    "is), for `cots neurons --positives --negatives` (docs/analysis.md).")
    crops.add_argument("annotations", nargs="+", help="imglab XML files (<image file=...><box top= left= width= "
                                                      "height=/>)")
    crops.add_argument("--out", required=True, help="folder to write positives/, negatives/ and crops.json into")
    crops.add_argument("--seed", type=int, default=0, help="offsets, scales and distractor places (default 0)")
    crops.add_argument("--scale", type=float, nargs=2, default=(1.4, 2.0), metavar=("LOW", "HIGH"),
                       help="crop side over face side, drawn uniformly (default 1.4 2.0)")
    crops.add_argument("--shift", type=float, default=0.2,
                       help="largest offset of the face centre, in face sides (default 0.2)")
    crops.add_argument("--negatives-per-face", type=int, default=2, help="distractors per face (default 2)")
    crops.add_argument("--margin", type=float, default=0.25,
                       help="distractors keep this many face sides away from every face (default 0.25)")
    crops.set_defaults(run=_crops)
    pack = sub.add_parser(
        "pack", help="pack a folder of images into uncompressed tar shards (data.source = \"shards\")",
        description="Pack every .jpg, .jpeg and .png under FOLDER, in the order a folder source lists them, "
                    "into OUT/shard-000000.tar ... (the ranks write every N-th shard); a shards source on OUT "
                    "draws the same batches as the folder (docs/data.md).")
    pack.add_argument("folder", help="the image folder")
    pack.add_argument("--out", required=True, help="a new or empty folder for the shards")
    pack.add_argument("--per-shard", type=int, default=5000, help="images per shard (default 5000)")
    pack.set_defaults(run=_pack)
    plan = sub.add_parser(
        "plan", help="memory, traffic, FLOPs and step time of a configuration on N ranks, from shapes alone",
        description="Plan a configuration on N ranks without allocating it (docs/scaling.md); "
                    "`cots plan --calibrate` measures this machine's rates for the step-time model.")
    plan.add_argument("config", nargs="?", help="the TOML configuration")
    plan.add_argument("--ranks", type=int, help="ranks of one model-parallel group")
    plan.add_argument("--grid", metavar="AxB", help="grid of ranks (default: the config's, else balanced)")
    plan.add_argument("--gpu-mem", type=float, metavar="GIB", help="memory per rank to check against, GiB")
    plan.add_argument("--batch", type=int, help="batch size (default: train.batch)")
    plan.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    plan.add_argument("--calibrate", action="store_true", help="measure this machine's rates into --profile")
    plan.add_argument("--calibrate-mib", type=float, default=256, metavar="MIB",
                      help="filters per calibration block, MiB: keep it beyond the last-level cache (default 256)")
    plan.add_argument("--profile", default="runs/machine-profile.json",
                      help="machine profile to read or write (default runs/machine-profile.json)")
    plan.add_argument("--gemm-gflops", type=float, help="GEMM rate per rank, GFLOP/s (with the other three)")
    plan.add_argument("--mem-gbps", type=float, help="memory bandwidth per rank, GB/s")
    plan.add_argument("--net-gbps", type=float, help="network bandwidth per link, GB/s")
    plan.add_argument("--latency-us", type=float, help="message latency, microseconds")
    plan.add_argument("--json", metavar="FILE", help="also write the plan as JSON")
    plan.set_defaults(run=_plan)
    for command in (info, train, neurons, export, crops, pack, plan):
        command.add_argument("--log-level", choices=LEVELS, default="info",
                             help="rank 0's console level; the other ranks print warnings and errors only "
                                  "(default info; debug adds a line per logged step and checkpoint)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cots`` console script.

    Bad input that every rank finds alike (a configuration error, a missing file) prints
    one message and returns 2. Any other error under mpiexec prints its traceback and aborts
    the whole job, so no rank is left waiting in a collective.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    from distarray import comm

    from .logs import configure

    world = comm.world()
    configure(args.log_level, world.Get_rank(), world.Get_size())
    try:
        return args.run(args)
    except (UsageError, RunError) as exc:  # raised on every rank alike
        if world.Get_rank() == 0:
            print(f"cots {args.command}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except BaseException:
        if world.Get_size() == 1:
            raise
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        comm.abort(world, 1)
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
