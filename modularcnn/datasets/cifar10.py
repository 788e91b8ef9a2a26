"""CIFAR-10 from its binary distribution: 50,000 + 10,000 colour 32x32 images, 10 classes.

The folder ``cifar-10-batches-bin`` holds ``data_batch_1.bin`` .. ``data_batch_5.bin`` and
``test_batch.bin``. Each file is a run of 3073-byte records: one label byte, then the
image as 3 planes of 32x32 bytes (red, green, blue; rows top to bottom).
"""

import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ._download import download, expect_md5
from ._locate import cache_dir, explicit_path_error, not_found_message, search_dirs
from .errors import DatasetError

NAME = "cifar10"
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE = "cifar-10-binary.tar.gz"
# MD5 published on https://www.cs.toronto.edu/~kriz/cifar.html for the binary version.
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")

IMAGE_SHAPE = (3, 32, 32)  # as stored: channel-major
RECORD_BYTES = 1 + 3 * 32 * 32


def load_data(path=None):
    """Load CIFAR-10, downloading and extracting it into the cache if it is nowhere else.

    Each searched place may be the ``cifar-10-batches-bin`` folder itself or a folder
    containing it. With ``path``, that place alone (or a DatasetError naming it); without it
    ``$MODULARCNN_DATA/cifar10``, ``~/.cache/modularcnn/cifar10``, then a download;
    ``MODULARCNN_OFFLINE=1`` disables downloading.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        ``x``: uint8 ``(N, 32, 32, 3)`` channels-last (N = 50000 / 10000);
        ``y``: uint8 ``(N,)`` in 0..9 (names in :data:`CLASS_NAMES`).

    Raises
    ------
    DatasetError
        Not found and not downloadable (lists every place searched), or a batch file whose
        size is not a whole number of 3073-byte records, or a label above 9.
    """
    searched = []
    for folder, origin in search_dirs(NAME, path):
        batches = find_batches(folder)
        if batches is not None:
            return _read_batches(batches)
        searched.append(f"{folder} ({origin}): no complete {FOLDER} there or inside")
    if path is not None:
        raise explicit_path_error("CIFAR-10", path, f"{FOLDER}/ with {', '.join(TRAIN_FILES + (TEST_FILE,))}", searched)

    cache = cache_dir(NAME)
    try:
        archive = cache / ARCHIVE
        if not archive.is_file():
            download([URL], archive, expect_md5(ARCHIVE_MD5))
        extract_archive(archive, cache)
    except DatasetError as error:
        wanted = f"{FOLDER}/ with {', '.join(TRAIN_FILES + (TEST_FILE,))}"
        raise DatasetError(
            not_found_message("CIFAR-10", NAME, wanted, searched, [f"{ARCHIVE}: {error}"])
        ) from error
    return _read_batches(find_batches(cache))


def find_batches(folder):
    """Return the folder holding all six batch files: ``folder`` or ``folder/cifar-10-batches-bin``.

    Returns None when neither holds all of them.
    """
    folder = Path(folder).expanduser()
    for candidate in (folder, folder / FOLDER):
        if all((candidate / f).is_file() for f in TRAIN_FILES + (TEST_FILE,)):
            return candidate
    return None


def read_batch(path):
    """Read one CIFAR-10 binary batch file.

    Returns
    -------
    (x, y)
        ``x``: uint8 ``(N, 32, 32, 3)``; ``y``: uint8 ``(N,)``.
    """
    data = Path(path).read_bytes()
    if len(data) == 0 or len(data) % RECORD_BYTES != 0:
        raise DatasetError(
            f"{path}: size {len(data)} bytes is not a positive multiple of the "
            f"{RECORD_BYTES}-byte record (1 label byte + 3x32x32 pixels); file damaged?"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    y = records[:, 0].copy()
    if y.max() > 9:
        raise DatasetError(f"{path}: contains label {y.max()}, expected labels 0..9")
    # Stored channel-major (N, 3, 32, 32); the library is channels-last.
    x = records[:, 1:].reshape((-1,) + IMAGE_SHAPE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y


def _read_batches(folder):
    train = [read_batch(folder / f) for f in TRAIN_FILES]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), read_batch(folder / TEST_FILE)


def extract_archive(archive, dest, folder=FOLDER, find=None):
    """Safely extract ``folder`` (``cifar-10-batches-bin/``) from ``archive`` into ``dest``.

    ``find(path)`` says whether an extracted folder is complete (CIFAR-100 passes its own).
    Every member must be a plain file or folder inside ``folder/``: absolute
    names, ``..``, links and devices are refused, so a hostile archive cannot write outside
    ``dest``. Extraction goes to a temporary folder that is renamed into place at the end,
    so an interrupted run leaves no half-extracted dataset.

    Raises
    ------
    DatasetError
        Unreadable archive or a member that is not allowed.
    """
    find = find or find_batches
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(archive, member, folder)
                for member in members:
                    if member.isfile():
                        target = (staging / member.name).resolve()
                        if not target.is_relative_to(staging.resolve()):  # belt and braces
                            raise DatasetError(f"{archive}: member {member.name!r} escapes "
                                               "the extraction folder")
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with tar.extractfile(member) as src, open(target, "wb") as out:
                            shutil.copyfileobj(src, out)
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DatasetError(f"{archive}: cannot extract ({error})") from error
        extracted = staging / folder
        if find(extracted) is None:
            raise DatasetError(f"{archive}: does not contain the {folder}/*.bin files")
        final = dest / folder
        if final.exists():
            # An incomplete earlier copy: complete ones are found before we get here.
            shutil.rmtree(final)
        extracted.replace(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_member(archive, member, folder=FOLDER):
    parts = Path(member.name).parts
    inside = len(parts) >= 1 and parts[0] == folder
    if (member.name.startswith(("/", "\\")) or ".." in parts or not inside
            or not (member.isfile() or member.isdir())):
        raise DatasetError(
            f"{archive}: refusing archive member {member.name!r} "
            f"(only plain files under {folder}/ are extracted)"
        )
