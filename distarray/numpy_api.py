"""NumPy on distributed arrays: ufuncs, arithmetic, reductions through NumPy's functions,
slicing, and a clear error for everything that would need the whole array on one rank.

What works, on every rank of the grid alike:

- **Elementwise**: every NumPy ufunc (``np.exp(x)``, ``x + y``, ``x * 2``, ``-x``, ``x > 0``,
  ``np.maximum(x, 0, out=x)``) and the in-place operators (``x += y``) between DistArrays of
  one layout (dtypes may differ) and scalars. Each rank applies the ufunc to its blocks: no
  communication, and the result has the operands' layout with the ufunc's result dtype.
  Operands of different layouts raise ValueError ("redistribute one first").
- **Reductions** (collective, the same Python number on every rank; the partial sums are
  combined exactly, so the rank count changes a float result by float64 rounding at most,
  see :mod:`distarray.reductions`): ``np.sum``, ``np.mean``, ``np.max``/``np.amax``,
  ``np.min``/``np.amin``, ``np.linalg.norm`` (the 2-norm of all elements), ``np.vdot``,
  ``np.all``, ``np.any``, ``np.count_nonzero``, ``np.allclose``, ``np.array_equal``, and
  ``np.add.reduce``/``np.maximum.reduce``/``np.minimum.reduce`` with ``axis=None``.
- **Local constructors and queries**: ``np.zeros_like``, ``np.ones_like``, ``np.full_like``,
  ``np.empty_like``, ``np.copy``, ``np.where(c, x, y)``, ``np.isclose``, ``np.shape``,
  ``np.ndim``, ``np.size``.
- **Slicing** ``x[a:b, :, c:]`` (steps of 1): a new DistArray on the same grid whose blocks
  are the old blocks cut to the slice. No communication; it is a copy, not a view (a block
  must be contiguous).

Everything else raises TypeError naming the function and what to do instead, rather than
converting silently: reductions over one axis, ``np.asarray(x)``, matrix products, integer
indexing. ``x.gather()`` or ``x.allgather()`` give the global array explicitly.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import backend
from . import comm as _comm
from . import reductions

if TYPE_CHECKING:  # pragma: no cover
    from .array import DistArray

__all__ = ["array_ufunc", "array_function", "getitem", "HANDLED_FUNCTIONS"]

GATHER_HINT = "use x.allgather() or x.gather() for the global array, or x.local for this rank's block"


def _is_dist(value: Any) -> bool:
    from .array import DistArray

    return isinstance(value, DistArray)


def _check_scalar(value: Any, where: str) -> Any:
    """``value`` itself when it is a scalar an elementwise operation may broadcast."""
    if isinstance(value, (numbers.Number, np.generic)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value
    raise TypeError(f"{where}: expected DistArrays of one layout or scalars, got {type(value).__name__}"
                    + (f" of shape {value.shape}" if hasattr(value, "shape") else "")
                    + "; make it a DistArray of the same layout first (distarray.from_global)")


def _check_same_layout(arrays: list["DistArray"], where: str) -> None:
    """Raise ValueError unless all ``arrays`` have one layout (dtypes aside) over congruent grids.
    Layouts are the same on every rank, so every rank raises together, without messages."""
    first = arrays[0]
    for other in arrays[1:]:
        same = dataclasses.replace(other.layout, dtype=first.dtype) == first.layout
        if not same or other.grid.dims != first.grid.dims or other.grid.comm is not first.grid.comm \
                and not _comm.congruent(other.grid.comm, first.grid.comm):
            raise ValueError(f"{where} needs DistArrays of one layout, got {first.layout.describe()} and "
                             f"{other.layout.describe()}: redistribute one first (x.redistribute(y.layout))")


def _locals(values: Any, arrays: list["DistArray"], where: str) -> Any:
    """``values`` (a tuple, or one value) with DistArrays replaced by their blocks, after the checks."""
    def swap(v: Any) -> Any:
        if _is_dist(v):
            arrays.append(v)
            return v.local
        return v if v is None else _check_scalar(v, where)

    return tuple(swap(v) for v in values) if isinstance(values, tuple) else swap(values)


def _wrap(local: Any, like: "DistArray") -> "DistArray":
    """A DistArray with ``like``'s layout (dtype from ``local``) holding ``local``."""
    from .array import DistArray

    xp = backend.get_array_module(local)
    local = xp.ascontiguousarray(local)
    return DistArray(local, dataclasses.replace(like.layout, dtype=np.dtype(local.dtype)), like.grid)


_REDUCERS = {np.add: reductions.sum, np.maximum: reductions.max, np.minimum: reductions.min}


def array_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    """``DistArray.__array_ufunc__``: see the module docstring."""
    name = f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    if method == "reduce":
        return _ufunc_reduce(ufunc, name, inputs, kwargs)
    if ufunc.signature is not None:
        raise TypeError(f"{name} works on core axes {ufunc.signature} that span ranks; it is not supported for "
                        f"DistArray: {GATHER_HINT}")
    if method != "__call__":
        raise TypeError(f"{name} is not supported for DistArray: only elementwise calls and whole-array "
                        f"add/maximum/minimum.reduce(axis=None) are; {GATHER_HINT}")
    arrays: list = []
    local_inputs = _locals(tuple(inputs), arrays, name)
    outs = kwargs.pop("out", None)
    targets: list = []
    if outs is not None:
        local_out = _locals(tuple(outs), targets, name)
        if any(o is None for o in local_out) or len(targets) != len(outs):
            raise TypeError(f"{name}: expected out= to be DistArrays")
        kwargs["out"] = local_out
    if "where" in kwargs:
        kwargs["where"] = _locals(kwargs["where"], arrays, name)
    _check_same_layout(arrays + targets, name)
    result = ufunc(*local_inputs, **kwargs)
    if targets:
        return targets[0] if len(targets) == 1 else tuple(targets)
    if isinstance(result, tuple):
        return tuple(_wrap(r, arrays[0]) for r in result)
    return _wrap(result, arrays[0])


def _ufunc_reduce(ufunc: np.ufunc, name: str, inputs: tuple, kwargs: dict) -> Any:
    if ufunc not in _REDUCERS or len(inputs) != 1 or kwargs.get("axis", 0) is not None \
            or set(kwargs) - {"axis", "keepdims"} or kwargs.get("keepdims"):
        raise TypeError(f"{name} is supported for DistArray only as add, maximum or minimum over the whole "
                        f"array (axis=None); a reduction over some axes would need a gather: {GATHER_HINT}")
    return _REDUCERS[ufunc](inputs[0])


# -- NumPy's functions ---------------------------------------------------------------------------
HANDLED_FUNCTIONS: dict[Callable, Callable] = {}


def _implements(*funcs: Callable) -> Callable:
    def register(impl: Callable) -> Callable:
        for f in funcs:
            HANDLED_FUNCTIONS[f] = impl
        return impl
    return register


def _whole(name: str, axis: Any = None, out: Any = None, keepdims: bool = False, **rest: Any) -> None:
    """Refuse what a whole-array reduction cannot do, naming it."""
    if axis is not None or out is not None or keepdims:
        raise TypeError(f"numpy.{name} of a DistArray reduces the whole array only (axis=None, no out, no "
                        f"keepdims); over some axes it would need a gather: {GATHER_HINT}")
    unknown = {k for k, v in rest.items() if v is not None and k not in ("dtype",)}
    if unknown:
        raise TypeError(f"numpy.{name} of a DistArray does not take {sorted(unknown)}")


def _array_arg(x: Any, name: str) -> "DistArray":
    if not _is_dist(x):
        raise TypeError(f"numpy.{name}: expected a DistArray, got {type(x).__name__}")
    return x


@_implements(np.sum)
def _sum(x, axis=None, dtype=None, out=None, keepdims=False, **kw):
    _whole("sum", axis, out, keepdims, **kw)
    return reductions.sum(_array_arg(x, "sum"))


@_implements(np.mean)
def _mean(x, axis=None, dtype=None, out=None, keepdims=False, **kw):
    _whole("mean", axis, out, keepdims, **kw)
    x = _array_arg(x, "mean")
    return reductions.sum(x) / math.prod(x.shape) if math.prod(x.shape) else math.nan


@_implements(np.max, np.amax)
def _max(x, axis=None, out=None, keepdims=False, **kw):
    _whole("max", axis, out, keepdims, **kw)
    return reductions.max(_array_arg(x, "max"))


@_implements(np.min, np.amin)
def _min(x, axis=None, out=None, keepdims=False, **kw):
    _whole("min", axis, out, keepdims, **kw)
    return reductions.min(_array_arg(x, "min"))


@_implements(np.linalg.norm)
def _norm(x, ord=None, axis=None, keepdims=False):
    if ord not in (None, 2, "fro") or (ord == 2 and x.ndim != 1):
        raise TypeError(f"numpy.linalg.norm of a DistArray is the 2-norm of all elements (ord=None); "
                        f"got ord={ord!r}")
    _whole("linalg.norm", axis, None, keepdims)
    return reductions.norm(_array_arg(x, "linalg.norm"))


@_implements(np.vdot)
def _vdot(a, b):
    _check_same_layout([_array_arg(a, "vdot"), _array_arg(b, "vdot")], "numpy.vdot")
    return reductions.dot(a, b)


def _count(x: "DistArray") -> int:
    xp = backend.get_array_module(x.local)
    return _comm.allreduce(x.grid.comm, int(xp.count_nonzero(x.local)))


@_implements(np.count_nonzero)
def _count_nonzero(x, axis=None, keepdims=False):
    _whole("count_nonzero", axis, None, keepdims)
    return _count(_array_arg(x, "count_nonzero"))


@_implements(np.all)
def _all(x, axis=None, out=None, keepdims=False, **kw):
    _whole("all", axis, out, keepdims, **kw)
    x = _array_arg(x, "all")
    return _count(x) == math.prod(x.shape)


@_implements(np.any)
def _any(x, axis=None, out=None, keepdims=False, **kw):
    _whole("any", axis, out, keepdims, **kw)
    return _count(_array_arg(x, "any")) > 0


@_implements(np.isclose)
def _isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    arrays: list = []
    la, lb = _locals((a, b), arrays, "numpy.isclose")
    _check_same_layout(arrays, "numpy.isclose")
    xp = backend.get_array_module(arrays[0].local)
    return _wrap(xp.isclose(la, lb, rtol=rtol, atol=atol, equal_nan=equal_nan), arrays[0])


@_implements(np.allclose)
def _allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return bool(_all(_isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)))


@_implements(np.array_equal)
def _array_equal(a, b, equal_nan=False):
    if not (_is_dist(a) and _is_dist(b)):
        raise TypeError("numpy.array_equal: expected two DistArrays")
    if a.shape != b.shape:
        return False
    _check_same_layout([a, b], "numpy.array_equal")
    xp = backend.get_array_module(a.local)
    same = bool(xp.array_equal(a.local, b.local, equal_nan=equal_nan))
    return _comm.allreduce(a.grid.comm, int(not same)) == 0


@_implements(np.where)
def _where(condition, x=None, y=None):
    if x is None or y is None:
        raise TypeError(f"numpy.where(condition) of a DistArray would list global indices: {GATHER_HINT}")
    arrays: list = []
    local = _locals((condition, x, y), arrays, "numpy.where")
    _check_same_layout(arrays, "numpy.where")
    xp = backend.get_array_module(arrays[0].local)
    return _wrap(xp.where(*local), arrays[0])


def _like(x: Any, dtype: Any, fill: Callable[[Any, Any], Any], name: str) -> "DistArray":
    x = _array_arg(x, name)
    xp = backend.get_array_module(x.local)
    return _wrap(fill(xp, x.local.dtype if dtype is None else np.dtype(dtype)), x)


@_implements(np.zeros_like)
def _zeros_like(x, dtype=None, order="K", subok=True, shape=None, **kw):
    return _like(x, dtype, lambda xp, d: xp.zeros(x.local.shape, d), "zeros_like")


@_implements(np.ones_like)
def _ones_like(x, dtype=None, order="K", subok=True, shape=None, **kw):
    return _like(x, dtype, lambda xp, d: xp.ones(x.local.shape, d), "ones_like")


@_implements(np.empty_like)
def _empty_like(x, dtype=None, order="K", subok=True, shape=None, **kw):
    return _like(x, dtype, lambda xp, d: xp.empty(x.local.shape, d), "empty_like")


@_implements(np.full_like)
def _full_like(x, fill_value, dtype=None, order="K", subok=True, shape=None, **kw):
    return _like(x, dtype, lambda xp, d: xp.full(x.local.shape, fill_value, d), "full_like")


@_implements(np.copy)
def _copy(x, order="K", subok=False):
    return _array_arg(x, "copy").copy()


@_implements(np.shape)
def _shape(x):
    return x.shape


@_implements(np.ndim)
def _ndim(x):
    return x.ndim


@_implements(np.size)
def _size(x, axis=None):
    return math.prod(x.shape) if axis is None else x.shape[axis]


def array_function(func: Callable, args: tuple, kwargs: dict) -> Any:
    """``DistArray.__array_function__``: the handled functions, else a TypeError naming ``func``."""
    impl = HANDLED_FUNCTIONS.get(func)
    if impl is None:
        module = getattr(func, "__module__", None) or "numpy"
        raise TypeError(f"{module}.{func.__name__} is not supported for "
                        f"DistArray (it would need the whole array on one rank): {GATHER_HINT}")
    return impl(*args, **kwargs)


# -- slicing ---------------------------------------------------------------------------------------
def _slices(key: Any, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """``key`` as one [start, stop) per axis (pure); TypeError for anything but unit-step slices."""
    key = key if isinstance(key, tuple) else (key,)
    if sum(k is Ellipsis for k in key) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1:]
    if len(key) > len(shape):
        raise IndexError(f"too many indices for a DistArray of shape {shape}: {len(key)}")
    key = key + (slice(None),) * (len(shape) - len(key))
    out = []
    for axis, (k, n) in enumerate(zip(key, shape)):
        if not isinstance(k, slice) or k.step not in (None, 1):
            raise TypeError(f"DistArray indexing takes slices of step 1 only (x[a:b, :]); axis {axis} got {k!r}. "
                            f"For one element or a row use a slice of length 1 (x[i:i+1]) or {GATHER_HINT}")
        start, stop, _ = k.indices(n)
        out.append((start, max(start, stop)))
    return out


def getitem(x: "DistArray", key: Any) -> "DistArray":
    """``x[key]`` for unit-step slices: the blocks cut to the slice (local, no communication)."""
    from .array import DistArray

    cuts = _slices(key, x.shape)
    blocks = []
    for axis, (start, stop) in enumerate(cuts):
        edges = np.cumsum((0,) + x.layout.blocks[axis])
        blocks.append(tuple(int(max(0, min(hi, stop) - max(lo, start))) for lo, hi in zip(edges[:-1], edges[1:])))
    layout = type(x.layout).create([b - a for a, b in cuts], x.layout.grid_shape, x.layout.split, x.dtype, blocks)
    box = x.box
    local_cut = tuple(slice(min(max(a - lo, 0), hi - lo), min(max(b - lo, 0), hi - lo))
                      for (a, b), lo, hi in zip(cuts, box.lo, box.hi))
    xp = backend.get_array_module(x.local)
    return DistArray(xp.array(x.local[local_cut], copy=True, order="C"), layout, x.grid)
