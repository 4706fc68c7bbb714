"""One stage of the network and its objective: the reconstruction-TICA sparse autoencoder
of Le et al. (ICML 2012), split over ranks by output location.

For a batch x (H, W, C, B) the stage computes

    z    = W1^T x             the encoder: locally connected filtering (maps per location)
    p    = sqrt(eps + H z^2)  fixed L2 pooling of the encoder outputs, map by map
    xhat = W2 z               the decoder: the transpose shape with its own weights
                              (or, tied, W2 = W1^T at every location)

and the objective, averaged over the batch,

    J = (1/B) sum_i ||xhat_i - x_i||^2  +  lambda (1/B) sum_i sum_j p_ij

whose gradients are dJ/dxhat = 2 (xhat - x) / B and dJ/dp = lambda / B. Backward runs the
decoder's backward (a fetch), adds the pooling's backward (an accumulate), and ends in the
encoder's weight gradient. The input is data, so the encoder's input gradient is computed
only when asked for. Every parameter gradient is computed where its weights live.

Untied and unconstrained, J has a free scale (W1/a and a W2 reconstruct alike while the
sparsity term falls by about a): ``norm`` removes it by projecting filters to unit norm after
every optimiser step (:meth:`SparseAutoencoder.project`), ``tied`` by sharing one weight
array (the gradient is the encoder's plus the decoder's), as RICA does (Le et al., NIPS 2011).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

import distarray as da
from distarray import comm
from distarray.backend import get_array_module
from layers import L2Pooling, LocallyConnected2D, LocallyConnectedTranspose2D

from .config import NORMS

__all__ = ["Losses", "SparseAutoencoder"]


@dataclass(frozen=True)
class Losses:
    """The objective's terms for one batch (batch means; the same floats on every rank)."""

    reconstruction: float
    sparsity: float

    @property
    def total(self) -> float:
        """Reconstruction plus the weighted sparsity."""
        return self.reconstruction + self.sparsity


class SparseAutoencoder:
    """A reconstruction-TICA stage: encoder, fixed L2 pooling, decoder (own weights).

    Parameters
    ----------
    in_shape : (H, W, C)
        Input rows, columns and channels.
    maps : int
        Encoder filters per output location (M; Le et al.: 8).
    k : int
        Receptive field side (Le et al.: 18).
    pool : int
        L2 pooling window side (Le et al.: 5), stride 1, unpadded.
    grid : ProcessGrid
        2-D grid of ranks over which output locations are split.
    lam : float
        Weight of the sparsity term (lambda; default 0.1).
    eps : float
        Inside the pooling's square root: keeps the sparsity term smooth at zero.
    stride : int
        Encoder window stride (default 1).
    seed : int
        Encoder weights are drawn from ``seed``, decoder weights from ``seed + 1``: the same
        network on any number of ranks.
    bias : bool
        Give the encoder a per-location bias (RICA has none; default False).
    tied : bool
        Decode with the encoder's weights (W2 = W1^T per location): one weight array, half
        the parameters, gradients and optimiser state (default False: Le et al.'s form).
    norm : {"none", "encoder", "decoder", "both"}
        Filters held at unit norm (per location and map): projected at construction and by
        :meth:`project` after each update. Tied, "encoder", "decoder" and "both" are the same.
    dtype, backend_name
        float32 or float64; "numpy" or "cupy".

    Collective: construct, and call every method, on every rank of ``grid``.
    """

    def __init__(self, in_shape: Sequence[int], maps: int, k: int, pool: int, grid: da.ProcessGrid,
                 lam: float = 0.1, eps: float = 1e-4, stride: int = 1, seed: int = 0, bias: bool = False,
                 tied: bool = False, norm: str = "none", dtype: Any = np.float32, backend_name: str = "numpy"):
        if not lam >= 0:
            raise ValueError(f"expected lambda >= 0, got {lam}")
        if norm not in NORMS:
            raise ValueError(f"expected norm one of {NORMS}, got {norm!r}")
        self.encoder = LocallyConnected2D(in_shape, maps, k, grid, stride=stride, seed=seed, bias=bias,
                                          dtype=dtype, backend_name=backend_name)
        self.pool = L2Pooling(self.encoder.out_shape, pool, grid, eps=eps, dtype=dtype, backend_name=backend_name)
        self.decoder = LocallyConnectedTranspose2D(in_shape, maps, k, grid, stride=stride, seed=seed + 1,
                                                   dtype=dtype, backend_name=backend_name,
                                                   tied_to=self.encoder if tied else None)
        self.tied = bool(tied)  # one weight array and one gradient: W2 = W1^T at every location
        self.norm = norm
        self.grid = grid
        self.lam = float(lam)
        self.project()
        self.in_shape = self.encoder.in_shape
        self.out_shape = self.pool.out_shape  # what the stage hands on (before LCN)
        self._saved: tuple | None = None

    @property
    def layers(self) -> tuple:
        """Encoder, pooling, decoder."""
        return self.encoder, self.pool, self.decoder

    def _trained_layers(self) -> tuple:
        return (("encoder", self.encoder),) + ((("decoder", self.decoder),) if not self.tied else ())

    def parameters(self) -> dict[str, da.DistArray]:
        """The stage's parameters by name ("encoder.weight", "decoder.weight", ...; tied: no
        "decoder.weight", the encoder's weight serves both)."""
        return {f"{name}.{key}": value for name, layer in self._trained_layers()
                for key, value in layer.parameters().items()}

    def gradients(self) -> dict[str, da.DistArray]:
        """Gradients from the last :meth:`backward`, named as :meth:`parameters`."""
        return {f"{name}.{key}": value for name, layer in self._trained_layers()
                for key, value in layer.gradients().items()}

    def project(self) -> None:
        """Put the filters that ``norm`` names back to unit norm (after an optimiser step;
        local, no messages)."""
        chosen = {"none": (), "encoder": (self.encoder,), "decoder": (self.decoder,),
                  "both": (self.encoder, self.decoder)}[self.norm]
        for layer in chosen[:1] if self.tied else chosen:
            layer.normalise_filters()

    def release_gradients(self) -> None:
        """Free the encoder's and decoder's gradient arrays (allocated again at the next
        :meth:`backward`)."""
        self.encoder.release_gradients()
        self.decoder.release_gradients()

    def encode(self, x: da.DistArray) -> da.DistArray:
        """The pooled features ``p = sqrt(eps + H (W1^T x)^2)`` (no objective, nothing kept
        for a backward of this stage's objective)."""
        return self.pool.forward(self.encoder.forward(x))

    def reconstruct(self, x: da.DistArray) -> da.DistArray:
        """The decoder's reconstruction ``W2 W1^T x`` of batch ``x`` (input layout; for
        looking at, not for a backward of this stage's objective)."""
        return self.decoder.forward(self.encoder.forward(x))

    def forward(self, x: da.DistArray) -> tuple[Losses, da.DistArray]:
        """The objective's terms on batch ``x`` (input layout) and the pooled features
        (pooling output layout); saves what :meth:`backward` needs."""
        batch = x.shape[3]
        z = self.encoder.forward(x)  # (oh, ow, M, B)
        p = self.pool.forward(z)  # (ph, pw, M, B)
        xhat = self.decoder.forward(z)  # (H, W, C, B), input layout
        xp = get_array_module(x.local)
        if xhat.layout != x.layout:
            raise ValueError(f"expected the input in the encoder's layout ({xhat.layout.describe()}), "
                             f"got {x.layout.describe()}")
        residual = xhat.local
        residual -= x.local  # (H, W, C, B) local block
        recon, sparse = comm.exact_sums(self.grid.comm, [
            float(xp.vdot(residual.ravel(), residual.ravel()).item()) if residual.size else 0.0,
            float(xp.sum(p.local, dtype=np.float64).item()),
        ])
        self._saved = (xhat, batch)
        return Losses(recon / batch, self.lam * sparse / batch), p

    def backward(self, dp: da.DistArray | None = None, input_grad: bool = False) -> da.DistArray | None:
        """Parameter gradients of the objective of the last :meth:`forward` (plus, when
        given, of ``sum(dp * p)``: a gradient arriving from above at the pooled features),
        into :meth:`gradients`. Returns the input gradient when ``input_grad``."""
        if self._saved is None:
            raise RuntimeError("SparseAutoencoder.backward() called before forward()")
        residual, batch = self._saved
        residual.local *= 2.0 / batch  # dJ/dxhat, in place of the residual
        dz = self.decoder.backward(residual)  # (oh, ow, M, B)
        dpool = self.pool.new_output(batch)
        dpool.local.fill(self.lam / batch)
        if dp is not None:
            dpool.local += dp.local
        dz.local += self.pool.backward(dpool).local
        self._saved = None
        # tied: the decoder wrote its part of dJ/dW into the shared gradient; the encoder adds its own
        dx = self.encoder.backward(dz, input_grad=input_grad, accumulate=self.tied)
        if dx is not None:
            dx.local -= residual.local  # the input is also the reconstruction's target
        return dx

    @property
    def comm_seconds(self) -> float:
        """Seconds this stage's layers spent inside exchange calls so far."""
        return sum(layer.comm_seconds for layer in self.layers)
