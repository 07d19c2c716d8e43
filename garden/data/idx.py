"""The IDX file format (MNIST, Fashion-MNIST), optionally gzipped.

Layout (all integers big-endian)::

    bytes 0-1   zero
    byte  2     dtype code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions n
    then        n uint32 sizes, then prod(sizes) values of the dtype

`read_idx` validates every part and raises a one-line `DataError` naming the file on a bad
magic number, an unknown dtype code, a truncated or over-long body, or a corrupt gzip stream.
Gzip is recognised by its magic bytes, not by the file name. `write_idx` is the inverse
(used by the tests and handy for building small fixtures).
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from garden.data.errors import DataError

# dtype code -> big-endian numpy dtype
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("=").str[1:]: code for code, dtype in DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"IDX file {path!r} does not exist") from None
    except OSError as e:
        raise DataError(f"cannot read IDX file {path!r}: {e.strerror or e}") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            msg = " ".join(str(e).split()) or type(e).__name__
            raise DataError(f"corrupt gzip stream in IDX file {path!r}: {msg}") from None
    return raw


def read_idx_header(raw: bytes, path: str = "<bytes>") -> tuple[np.dtype, tuple[int, ...], int]:
    """(big-endian dtype, shape, header length in bytes) of an IDX byte string."""
    if len(raw) < 4:
        raise DataError(f"IDX file {path!r} is truncated: {len(raw)} bytes, shorter than the 4-byte magic number")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"IDX file {path!r} has a bad magic number 0x{raw[:4].hex()}: expected 0x0000 then a dtype code "
            "and a dimension count (not an IDX file?)")
    code, ndim = raw[2], raw[3]
    if code not in DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in DTYPES)
        raise DataError(f"IDX file {path!r} has an unknown dtype code 0x{code:02X}; valid: {valid}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path!r} is truncated: {len(raw)} bytes, the header of {ndim} dimensions needs {header}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return DTYPES[code], shape, header


def read_idx(path: str | os.PathLike, expected_ndim: int | None = None) -> np.ndarray:
    """The array stored in an IDX file (native byte order; uint8 for MNIST files)."""
    path = os.fspath(path)
    raw = _read_bytes(path)
    dtype, shape, header = read_idx_header(raw, path)
    if expected_ndim is not None and len(shape) != expected_ndim:
        raise DataError(f"IDX file {path!r} has {len(shape)} dimensions {list(shape)}; expected {expected_ndim}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    need = header + count * dtype.itemsize
    if len(raw) < need:
        raise DataError(
            f"IDX file {path!r} is truncated: {len(raw)} bytes, its header {list(shape)} of {dtype.newbyteorder('=').name} "
            f"needs {need}")
    if len(raw) > need:
        raise DataError(
            f"IDX file {path!r} is corrupt: {len(raw) - need} bytes after the {need} that its header "
            f"{list(shape)} of {dtype.newbyteorder('=').name} describes")
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write `array` as an IDX file; gzipped when `compress` (default: the name ends in .gz)."""
    path = os.fspath(path)
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str[1:]
    if key not in _CODES:
        valid = ", ".join(d.newbyteorder("=").name for d in DTYPES.values())
        raise DataError(f"cannot write dtype {array.dtype} to IDX file {path!r}; valid: {valid}")
    code = _CODES[key]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        data = gzip.compress(data, compresslevel=6)
    with open(path, "wb") as f:
        f.write(data)
