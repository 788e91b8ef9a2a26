"""Download a file safely: short timeout, mirrors tried in turn, checksum, atomic rename.

A download never leaves a partial file under the final name: bytes go to a temporary file
in the destination folder, are fsynced and verified, and only then ``os.replace``-d into
place (an atomic rename on the same file system).
"""

import hashlib
import http.client
import os
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ._gzip import read_maybe_gzip
from ..saving.atomic import atomic_path
from .errors import DatasetError

OFFLINE_ENV = "MODULARCNN_OFFLINE"
TIMEOUT_S = 10
CHUNK_BYTES = 1 << 16


def is_offline():
    """True when ``$MODULARCNN_OFFLINE`` is set to something other than "", "0", "false", "no"."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def expect_sha256_decompressed(hexdigest):
    """Return a check that the file's bytes, gunzipped if gzip, have SHA-256 ``hexdigest``.

    Hashing the decompressed bytes accepts any faithful copy, whatever its gzip settings.
    """
    def check(path):
        actual = hashlib.sha256(read_maybe_gzip(path)).hexdigest()
        if actual != hexdigest:
            raise DatasetError(
                f"checksum mismatch: decompressed SHA-256 is {actual}, expected {hexdigest}"
            )
    return check


def expect_md5(hexdigest):
    """Return a check that the file's raw bytes have MD5 ``hexdigest``."""
    def check(path):
        actual = hashlib.md5(Path(path).read_bytes()).hexdigest()
        if actual != hexdigest:
            raise DatasetError(f"checksum mismatch: MD5 is {actual}, expected {hexdigest}")
    return check


def download(urls, dest, check):
    """Fetch the first of ``urls`` that works and passes ``check`` into ``dest``.

    Parameters
    ----------
    urls : list of str
        Mirrors, tried in order.
    dest : Path
        Final file name; its folder is created if needed.
    check : callable(Path) -> None
        Raises :class:`DatasetError` if the downloaded file is not the expected one.

    Raises
    ------
    DatasetError
        Offline mode, or every mirror failed; the message lists each URL and its error.
    """
    if is_offline():
        raise DatasetError(
            f"skipped: {OFFLINE_ENV}={os.environ[OFFLINE_ENV]} forbids network access")
    failures = []
    for url in urls:
        try:
            _fetch_atomically(url, Path(dest), check)
            return
        except (OSError, http.client.HTTPException, DatasetError, ValueError) as error:
            # URLError, HTTPError and socket timeouts are all OSErrors.
            failures.append(f"{url}: {type(error).__name__}: {error}")
    raise DatasetError("; ".join(failures))


def _fetch_atomically(url, dest, check):
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as temporary:
        with open(temporary, "wb") as out:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                expected_size = _content_length(response)
                received = _copy_with_progress(response, out, expected_size, dest.name)
        if expected_size is not None and received != expected_size:
            raise DatasetError(f"incomplete download: got {received} of {expected_size} bytes")
        check(Path(temporary))  # a failed check raises, and atomic_path discards the file


def _content_length(response):
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _copy_with_progress(response, out, total, label):
    received = 0
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {label}") as bar:
        while True:
            chunk = response.read(CHUNK_BYTES)
            if not chunk:
                return received
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))


