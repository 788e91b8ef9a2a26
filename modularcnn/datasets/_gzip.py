"""Read a file whole, decompressing it when it is gzip (detected by content, not by name)."""

import gzip
import zlib
from pathlib import Path

from .errors import DatasetError

GZIP_MAGIC = b"\x1f\x8b"


def read_maybe_gzip(path):
    """Return the bytes of ``path``, gunzipped if the file starts with the gzip magic ``1f 8b``.

    The whole file is decompressed in one go, so the gzip CRC and length trailer are always
    checked: a truncated or corrupted archive raises :class:`DatasetError` instead of
    yielding half the data.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bytes
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        # BadGzipFile (an OSError) covers CRC/length failures; EOFError a cut-off stream.
        raise DatasetError(
            f"{path} is a damaged gzip file ({type(error).__name__}: {error}); "
            "delete it and download it again"
        ) from error
