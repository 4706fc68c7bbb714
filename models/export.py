"""``cots export``: a run's trained parameters as global arrays in a file other tools read.

Two formats:

- ``npz``: NumPy's zip of ``.npy`` files (``numpy.load``), stored uncompressed with ZIP64
  so arrays over 4 GiB are fine. Besides one entry per parameter it holds ``config`` (the
  run's configuration as TOML text) and ``meta`` (JSON: the step, the preprocessing, the
  checkpoint it came from), both 0-d string arrays: ``str(np.load(f)["config"])``.
- ``safetensors``: the Hugging Face format (an 8-byte header length, a JSON header, the raw
  little-endian tensors), readable by ``safetensors.numpy.load_file`` and by PyTorch, JAX and
  Rust tools. ``config`` and ``meta`` are strings in the header's ``__metadata__``.

Both are written by streaming: the checkpoint is read array by array and slab by slab
(:class:`distarray.checkpoint_reader.CheckpointReader`), so memory stays at one slab
(64 MiB) however large the network; le2012's 9 GB of parameters never sit in memory at once.
The file appears whole or not at all (written under a temporary name, fsynced, renamed).

The format of safetensors is simple enough to write by hand in a few lines; its own package
(``pip install safetensors``, in the test extra) is used only to check the files.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from distarray.checkpoint_reader import CheckpointReader

__all__ = ["FORMATS", "export_checkpoint", "exported_names", "SAFETENSORS_DTYPES"]

FORMATS = ("npz", "safetensors")
PARAM = "param/"  # prefix of the parameters' names in a training checkpoint
SLAB_BYTES = 64 << 20
#: NumPy dtype -> safetensors dtype name (the ones a network's parameters can have).
SAFETENSORS_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
                      "uint8": "U8", "bool": "BOOL"}


def exported_names(reader: CheckpointReader) -> dict[str, str]:
    """Checkpoint name -> exported name of every parameter (``param/stage0.encoder.weight``
    -> ``stage0.encoder.weight``; the optimiser state is left out)."""
    return {n: n[len(PARAM):] for n in reader.names if n.startswith(PARAM)}


def _texts(reader: CheckpointReader) -> dict[str, str]:
    """The ``config`` (TOML) and ``meta`` (JSON) strings stored beside the arrays."""
    from .config import to_toml

    meta = reader.meta
    config = meta.get("config")
    info = {"format": "cots-hpc parameters", "step": meta.get("step"), "checkpoint": str(reader.source),
            "preprocess": meta.get("preprocess")}
    return {"config": to_toml(config) if isinstance(config, dict) else "", "meta": json.dumps(info)}


def _write_npz(f: Any, reader: CheckpointReader, names: dict[str, str], log: Callable[[str], None]) -> None:
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, text in _texts(reader).items():
            with zf.open(f"{key}.npy", "w") as entry:
                np.lib.format.write_array(entry, np.array(text), allow_pickle=False)
        for saved, name in names.items():
            shape, dtype = reader.shape(saved), reader.dtype(saved)
            with zf.open(f"{name}.npy", "w", force_zip64=True) as entry:
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_2_0(entry, header)
                for slab in reader.slabs(saved, SLAB_BYTES):
                    entry.write(memoryview(np.ascontiguousarray(slab)).cast("B"))
            log(f"  {name} {list(shape)} {dtype}")


def safetensors_header(entries: list[tuple[str, str, tuple[int, ...], int]], metadata: dict[str, str]) -> bytes:
    """The length-prefixed JSON header of a safetensors file (pure).

    ``entries`` are (name, dtype code, shape, nbytes) in file order; the tensors follow the
    header back to back. The JSON is padded with spaces to a multiple of 8 bytes, as the
    format's reference writer does.
    """
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, code, shape, nbytes in entries:
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def _write_safetensors(f: Any, reader: CheckpointReader, names: dict[str, str], log: Callable[[str], None]) -> None:
    entries = []
    for saved, name in names.items():
        dtype = reader.dtype(saved)
        if dtype.name not in SAFETENSORS_DTYPES:
            raise ValueError(f"expected parameters of dtype {sorted(SAFETENSORS_DTYPES)} for safetensors, "
                             f"got {dtype} for {name}")
        entries.append((name, SAFETENSORS_DTYPES[dtype.name], reader.shape(saved), reader.nbytes(saved)))
    f.write(safetensors_header(entries, _texts(reader)))
    for saved, name in names.items():
        for slab in reader.slabs(saved, SLAB_BYTES):
            little = slab.astype(slab.dtype.newbyteorder("<"), copy=False)
            f.write(memoryview(np.ascontiguousarray(little)).cast("B"))
        log(f"  {name} {list(reader.shape(saved))} {reader.dtype(saved)}")


def _atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through ``write(file)`` under a temporary name, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_checkpoint(checkpoint: str | Path, out: str | Path, fmt: str = "npz",
                      log: Callable[[str], None] | None = None) -> Path:
    """Write the parameters of ``checkpoint`` to ``out`` in format ``fmt`` (one process, no MPI).

    Parameters
    ----------
    checkpoint : str or Path
        A training checkpoint directory (``RUN/checkpoints/step-N``).
    out : str or Path
        The file to write; replaced atomically if it exists.
    fmt : {"npz", "safetensors"}
        The format (see the module docstring).
    log : callable, optional
        Called with one line per array written.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    CheckpointError
        The checkpoint is incomplete, or a shard missing, truncated or corrupt.
    ValueError
        An unknown format, or a checkpoint without parameters.
    """
    if fmt not in FORMATS:
        raise ValueError(f"expected a format in {list(FORMATS)}, got {fmt!r}")
    reader = CheckpointReader(checkpoint)
    names = exported_names(reader)
    if not names:
        raise ValueError(f"checkpoint {reader.source} holds no parameters (arrays {reader.names})")
    log = log or (lambda line: None)
    write = _write_npz if fmt == "npz" else _write_safetensors
    out = Path(out)
    _atomic(out, lambda f: write(f, reader, names, log))
    return out

