"""The optional packages, each behind the extra that installs it.

A training node needs numpy, mpi4py, Pillow and tqdm only (``pip install cots-hpc``, about
124 MB with its dependencies, measured in a fresh venv). The rest comes with extras, so that
a cluster's nodes do not each carry the 280 MB that scikit-image and matplotlib (with scipy,
networkx, ...) add, which they never import:

=============  ===================================  ==========================================
extra          packages                             what needs them
=============  ===================================  ==========================================
``bundled``    scikit-image                         ``data.source = "bundled"`` (the default)
``analysis``   matplotlib, scipy, scikit-image      ``cots neurons``; loss.png and curves.png
``video``      av (PyAV)                            ``data.source = "video"``
``tensorboard``  tensorboardX                       ``train.tensorboard = true``
``mpi``        mpich                                an MPI from PyPI (``mpiexec``)
``all``        every one of them
=============  ===================================  ==========================================

:func:`require` imports a module or raises :class:`MissingExtra` (a ValueError, so that the
CLI reports it as one line on every rank alike) naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["MissingExtra", "require", "pyplot", "EXTRA_OF"]

#: top-level module -> (PyPI package, extra that installs it)
EXTRA_OF = {"skimage": ("scikit-image", "bundled"), "matplotlib": ("matplotlib", "analysis"),
            "scipy": ("scipy", "analysis"), "av": ("av", "video"), "tensorboardX": ("tensorboardX", "tensorboard")}


class MissingExtra(ValueError):
    """An optional package is not installed."""


def require(module: str, purpose: str) -> ModuleType:
    """``module`` imported, or MissingExtra: "PURPOSE needs PACKAGE: pip install 'cots-hpc[EXTRA]'"."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package, extra = EXTRA_OF[module.split(".")[0]]
        raise MissingExtra(f"{purpose} needs {package}, which is not installed: pip install 'cots-hpc[{extra}]' "
                           f"(or 'cots-hpc[all]')") from None


def pyplot(purpose: str = "drawing figures") -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    matplotlib = require("matplotlib", purpose)
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")
