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
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..validation import MAX_ARRAY_ELEMENTS
from ._gzip import GZIP_MAGIC
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
#: NumPy arrays have at most 64 dimensions; a header claiming 255 is refused by its count.
MAX_IDX_DIMENSIONS = 64


#: The largest IDX array read, in elements (the library's bound on any array, 2**31).
MAX_IDX_ELEMENTS = MAX_ARRAY_ELEMENTS
#: A gzipped IDX file may inflate to at most this many times its size: deflate cannot do better than
#: about 1032:1, so a header claiming more is refused before anything is decompressed.
MAX_GZIP_EXPANSION = 1100
_GZIP_SLACK_BYTES = 2**16


def _parse_header(head, source, read_more):
    """``(dtype, dims, header_size)`` from the first bytes of an IDX file.

    ``head`` holds the first 4 bytes (fewer for a short file); ``read_more(n)`` returns the next
    ``n`` bytes (fewer at the end of the file). The product of the dimensions is taken with Python
    ints (int64 wraps around for ``(65536,) * 4``) and bounded by :data:`MAX_IDX_ELEMENTS`.
    """
    if len(head) < 4:
        raise DatasetError(f"{source}: file is {len(head)} bytes, too short for an IDX header")
    zero0, zero1, code, ndim = head[0], head[1], head[2], head[3]
    if zero0 != 0 or zero1 != 0:
        raise DatasetError(
            f"{source}: not an IDX file (magic starts with {bytes(head[:4]).hex()}, "
            "expected 0000 followed by a dtype code and the number of dimensions)"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DatasetError(f"{source}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DatasetError(f"{source}: IDX header declares 0 dimensions")
    if ndim > MAX_IDX_DIMENSIONS:
        raise DatasetError(f"{source}: IDX header declares {ndim} dimensions; at most "
                           f"{MAX_IDX_DIMENSIONS} are read (NumPy's limit)")
    header_size = 4 + 4 * ndim
    rest = read_more(4 * ndim)
    if len(rest) < 4 * ndim:
        raise DatasetError(
            f"{source}: header declares {ndim} dimensions ({header_size} header bytes) "
            f"but the file is only {4 + len(rest)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", rest)
    elements = math.prod(dims)
    if elements > MAX_IDX_ELEMENTS:
        raise DatasetError(f"{source}: IDX header declares dims {tuple(dims)} ({elements:,} values), "
                           f"more than the {MAX_IDX_ELEMENTS:,} (MAX_IDX_ELEMENTS) read")
    return IDX_DTYPES[code], dims, header_size


def _wrong_payload(source, dims, dtype, header_size, expected, found):
    problem = "truncated" if found < expected else "has trailing bytes"
    return DatasetError(
        f"{source}: payload {problem}: dims {tuple(dims)} of {dtype.name} need "
        f"{expected} bytes after the {header_size}-byte header, found "
        f"{found if found < expected else 'more'}"
    )


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
        Bad magic, unknown dtype code, header cut short, more than :data:`MAX_IDX_ELEMENTS` values,
        or a payload whose length is not exactly ``prod(dims) * itemsize``.
    """
    view = memoryview(data)
    dtype, dims, header_size = _parse_header(view[:4], source, lambda n: view[4:4 + n])
    expected = math.prod(dims) * dtype.itemsize
    payload = len(data) - header_size
    if payload != expected:
        raise _wrong_payload(source, dims, dtype, header_size, expected, payload)
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
    # astype copies: the result is writable and in the machine's byte order.
    return array.astype(dtype.newbyteorder("="))


def load_idx(path):
    """Read an IDX file, gzipped or not (detected from the magic bytes ``1f 8b``).

    The header is read first (from the first bytes of the gzip stream for a ``.gz``) and checked
    before any of the body: its dimensions must hold at most :data:`MAX_IDX_ELEMENTS` values and,
    for a gzip file, at most :data:`MAX_GZIP_EXPANSION` times the file's size in bytes. The body is
    then decompressed in pieces straight into the result, and not a byte beyond what the header
    declares: a gzip bomb costs no more memory than its header admits to, and its extra bytes are
    refused as trailing bytes.

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
    path = Path(path)
    source = str(path)
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    with handle:
        size = os.fstat(handle.fileno()).st_size
        compressed = handle.read(2) == GZIP_MAGIC
        handle.seek(0)
        if not compressed:
            return _read_idx_stream(handle, source, size_limit=None)
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
                return _read_idx_stream(stream, source,
                                        size_limit=size * MAX_GZIP_EXPANSION + _GZIP_SLACK_BYTES)
        except (OSError, EOFError, zlib.error) as error:
            # BadGzipFile (an OSError) covers CRC/length failures; EOFError a cut-off stream.
            raise DatasetError(
                f"{path} is a damaged gzip file ({type(error).__name__}: {error}); "
                "delete it and download it again"
            ) from error


def _read_idx_stream(stream, source, size_limit):
    """The array of the IDX file read from ``stream`` (a binary file object), header first."""
    dtype, dims, header_size = _parse_header(_read_up_to(stream, 4), source,
                                             lambda n: _read_up_to(stream, n))
    expected = math.prod(dims) * dtype.itemsize
    if size_limit is not None and header_size + expected > size_limit:
        raise DatasetError(
            f"{source}: IDX header declares dims {tuple(dims)} ({expected:,} bytes), more than "
            f"{MAX_GZIP_EXPANSION} times the gzip file's size: a decompression bomb, or a damaged "
            "header; refused before decompressing it"
        )
    body = np.empty(expected, dtype=np.uint8)
    found = _read_into(stream, memoryview(body))
    if found < expected or stream.read(1):  # reading on to the end also checks gzip's CRC
        raise _wrong_payload(source, dims, dtype, header_size, expected, found)
    return body.view(dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def _read_up_to(stream, count):
    """Up to ``count`` bytes (fewer only at the end of the stream)."""
    parts, missing = [], count
    while missing > 0:
        part = stream.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def _read_into(stream, view, piece=1 << 22):
    """Fill ``view`` from ``stream`` in pieces of ``piece`` bytes; returns the bytes read."""
    done = 0
    while done < len(view):
        count = stream.readinto(view[done:done + piece])
        if not count:
            break
        done += count
    return done


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
