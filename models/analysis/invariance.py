"""Invariance curves (Le et al., ICML 2012, figure 4): a neuron's response to its top images
as they are translated, scaled and rotated in plane.

Each transform is applied to the (N, H, W, C) images with scipy.ndimage (cubic spline,
borders mirrored), every transformed image is normalised on its own as in training, and the
neuron's mean response over the images is reported at each amount, and divided by its mean
response to the untransformed images (1 at amount 0; an invariant neuron stays near 1 over a
range, a rigid template falls off at once).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..data import normalise_images
from ..extras import require
from ..network import Network
from .activations import layer_activations
from .neurons import neuron_rows

__all__ = ["AMOUNTS", "invariance_curves", "transform"]

#: Amounts per transform: horizontal shift in pixels as a fraction of the width, scale factor,
#: in-plane rotation in degrees. Each holds its identity (0, 1, 0).
AMOUNTS = {"translation": (-0.25, -0.15, -0.08, 0.0, 0.08, 0.15, 0.25),
           "scale": (0.6, 0.75, 0.9, 1.0, 1.1, 1.25, 1.4),
           "rotation": (-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0)}


def transform(images: np.ndarray, kind: str, amount: float) -> np.ndarray:
    """``images`` (N, H, W, C) shifted right by ``amount`` of their width, scaled by ``amount``
    about their centre, or rotated by ``amount`` degrees; float64, not normalised."""
    ndimage = require("scipy.ndimage", "the invariance curves of cots neurons")
    x = np.asarray(images, dtype=np.float64)
    h, w = x.shape[1:3]
    if kind == "translation":
        one = lambda plane: ndimage.shift(plane, (0, amount * w), order=3, mode="mirror")  # noqa: E731
    elif kind == "rotation":
        one = lambda plane: ndimage.rotate(plane, amount, reshape=False, order=3, mode="mirror")  # noqa: E731
    elif kind == "scale":
        if not amount > 0:
            raise ValueError(f"expected a scale factor > 0, got {amount}")
        centre = np.array([(h - 1) / 2, (w - 1) / 2])
        one = lambda plane: ndimage.affine_transform(  # noqa: E731 (output -> input coordinates)
            plane, np.eye(2) / amount, offset=centre - centre / amount, order=3, mode="mirror")
    else:
        raise ValueError(f"expected a transform in {sorted(AMOUNTS)}, got {kind!r}")
    out = np.empty_like(x)
    for n in range(x.shape[0]):  # plane by plane: the spline never mixes images or channels
        for c in range(x.shape[3]):
            out[n, :, :, c] = one(x[n, :, :, c])
    return out


def invariance_curves(network: Network, images: np.ndarray, neuron: int, stage: int, layer: str, world: Any,
                      amounts: dict[str, Sequence[float]] | None = None) -> dict[str, dict[str, list[float]]]:
    """The response of ``neuron`` to ``images`` under each transform, relative to no transform.

    Parameters
    ----------
    network : Network
    images : (N, H, W, C)
        The neuron's top images (normalised), the same on every rank.
    neuron : int
        Global number of a neuron of ``layer`` of ``stage``.
    world : communicator
        The network's ranks.
    amounts : optional
        Per transform, the amounts (default :data:`AMOUNTS`).

    Returns
    -------
    {kind: {"amounts": [...], "response": [...], "relative": [...]}}, the same on every rank:
    the mean response at each amount, and that divided by the untransformed mean (NaN when
    that is not positive).

    Collective: call on every rank of ``world``.
    """
    amounts = AMOUNTS if amounts is None else amounts
    kinds = list(amounts)
    batch = np.concatenate([normalise_images(transform(images, kind, a)) for kind in kinds for a in amounts[kind]])
    acts, indices = layer_activations(network, batch, stage, layer)
    row = neuron_rows(acts, indices, [neuron], world)[0]  # (sum of amounts x N,)
    plain = layer_activations(network, normalise_images(images), stage, layer)
    base = float(np.mean(neuron_rows(*plain, [neuron], world)[0]))  # the untransformed response
    out, at, n = {}, 0, len(images)
    for kind in kinds:
        means = []
        for _ in amounts[kind]:
            means.append(float(np.mean(row[at:at + n])))
            at += n
        out[kind] = {"amounts": [float(a) for a in amounts[kind]], "response": means,
                     "relative": [m / base if base > 0 else float("nan") for m in means]}
    return out
