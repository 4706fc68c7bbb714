"""The ``cots`` command. Run under mpiexec for several ranks: ``mpiexec -n 4 cots info``."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main"]


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cots``."""
    from distarray import __version__

    parser = argparse.ArgumentParser(
        prog="cots", description="Locally connected networks split across GPUs and machines."
    )
    parser.add_argument("--version", action="version", version=f"cots-hpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="show versions, MPI library, ranks and array backends")
    info.set_defaults(run=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cots`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
