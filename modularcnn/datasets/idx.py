"""Reader (and writer) for the IDX format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the data
in C order, big-endian::

    byte 0-1   0x00 0x00
    byte 2     dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
               0x0D float32, 0x0E float64)
    byte 3     number of dimensions nd
    4 * nd     the dimensions, uint32 big-endian
    rest       prod(dims) * itemsize bytes of data
"""

import gzip
import struct
from pathlib import Path

import numpy as np

from ._gzip import read_maybe_gzip
from .errors import DatasetError

# IDX dtype code -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data, source="<bytes>"):
    """Decode the (already decompressed) bytes of an IDX file.

    Parameters
    ----------
    data : bytes
        The complete file contents.
    source : str
        Name used in error messages.

    Returns
    -------
    np.ndarray
        Array of shape ``dims`` in native byte order, writable, dtype from the header.

    Raises
    ------
    DatasetError
        Bad magic, unknown dtype code, header cut short, or a payload whose length is not
        exactly ``prod(dims) * itemsize``.
    """
    if len(data) < 4:
        raise DatasetError(f"{source}: file is {len(data)} bytes, too short for an IDX header")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise DatasetError(
            f"{source}: not an IDX file (magic starts with {data[:4].hex()}, "
            "expected 0000 followed by a dtype code and the number of dimensions)"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DatasetError(f"{source}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DatasetError(f"{source}: IDX header declares 0 dimensions")

    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DatasetError(
            f"{source}: header declares {ndim} dimensions ({header_size} header bytes) "
            f"but the file is only {len(data)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header_size
    if payload != expected:
        problem = "truncated" if payload < expected else "has trailing bytes"
        raise DatasetError(
            f"{source}: payload {problem}: dims {tuple(dims)} of {dtype.name} need "
            f"{expected} bytes after the {header_size}-byte header, found {payload}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
    # astype copies: the result is writable and in the machine's byte order.
    return array.astype(dtype.newbyteorder("="))


def load_idx(path):
    """Read an IDX file, gzipped or not (detected from the magic bytes ``1f 8b``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    np.ndarray
        Shape given by the header, e.g. ``(60000, 28, 28)`` uint8 for MNIST images,
        ``(60000,)`` uint8 for labels.

    Raises
    ------
    DatasetError
        The file is unreadable, a damaged gzip, or not a well-formed IDX file.
    """
    return parse_idx(read_maybe_gzip(path), source=str(path))


def save_idx(path, array, compress=None):
    """Write ``array`` as an IDX file (gzipped when ``compress`` or when the name ends in .gz).

    Handy for building small fake datasets. The dtype must be one IDX supports.

    Parameters
    ----------
    path : str or os.PathLike
    array : np.ndarray
        Any shape with at least one dimension.
    compress : bool or None
        ``None`` means "compress if the file name ends with .gz".
    """
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"save_idx: dtype {array.dtype} has no IDX code (supported: "
                         f"{', '.join(d.name for d in codes)})")
    if array.ndim == 0:
        raise ValueError("save_idx: array must have at least one dimension, got a scalar")
    header = struct.pack(">BBBB", 0, 0, codes[native], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(IDX_DTYPES[codes[native]]).tobytes()
    path = Path(path)
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path
