"""Shared loader for the MNIST-shaped IDX datasets (MNIST, Fashion-MNIST)."""

import numpy as np

from ._download import download
from ._locate import cache_dir, explicit_path_error, not_found_message, search_dirs
from .errors import DatasetError
from .idx import load_idx

# The standard four files of the distribution (each may be stored plain or with ".gz").
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def find_files(folder):
    """Map each standard file name to its path in ``folder`` (plain or ``.gz``).

    Returns
    -------
    (dict, list)
        The files found, and the names that are missing.
    """
    found, missing = {}, []
    for name in FILES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            missing.append(name)
    return found, missing


def load_idx_dataset(title, name, path, mirrors, checks, num_classes=10, image_shape=(28, 28)):
    """Find (or download) and read a four-file IDX dataset.

    Parameters
    ----------
    title : str
        Name for messages, e.g. "MNIST".
    name : str
        Folder name under ``$MODULARCNN_DATA`` and the cache, e.g. "mnist".
    path : str, os.PathLike or None
        The folder to read, alone (a DatasetError naming it when the files are not all there);
        None searches ``$MODULARCNN_DATA/<name>`` and the cache, then downloads.
    mirrors : list of str
        Base URLs; file ``F`` is fetched from ``mirror + F + ".gz"``.
    checks : dict
        File name -> callable(Path) verifying a downloaded ``F.gz``.
    num_classes : int
        Labels must lie in ``[0, num_classes)``.
    image_shape : tuple
        Expected ``(H, W)`` of each image.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        ``x``: uint8 ``(N, H, W)``; ``y``: uint8 ``(N,)``.
    """
    searched = []
    for folder, origin in search_dirs(name, path):
        found, missing = find_files(folder)
        if not missing:
            return _read_and_check(title, found, num_classes, image_shape)
        reason = "folder does not exist" if not folder.is_dir() else "missing " + ", ".join(missing)
        searched.append(f"{folder} ({origin}): {reason}")
    wanted = ", ".join(f"{f}[.gz]" for f in FILES)
    if path is not None:
        raise explicit_path_error(title, path, wanted, searched)

    cache = cache_dir(name)
    problems = []
    for file_name in find_files(cache)[1]:
        urls = [f"{mirror}{file_name}.gz" for mirror in mirrors]
        try:
            download(urls, cache / f"{file_name}.gz", checks[file_name])
        except DatasetError as error:
            problems.append(f"{file_name}.gz: {error}")
            break  # the other files would fail the same way; do not wait on them too
    if not problems:
        found, missing = find_files(cache)
        if not missing:
            return _read_and_check(title, found, num_classes, image_shape)
        problems.append("download finished but files are still missing: " + ", ".join(missing))
    raise DatasetError(not_found_message(title, name, wanted, searched, problems))


def _read_and_check(title, files, num_classes, image_shape):
    arrays = {name: load_idx(path) for name, path in files.items()}
    splits = []
    for images_name, labels_name in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        x, y = arrays[images_name], arrays[labels_name]
        images_path, labels_path = files[images_name], files[labels_name]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != tuple(image_shape):
            raise DatasetError(
                f"{title}: {images_path} holds {x.dtype} {x.shape}, "
                f"expected uint8 (N, {image_shape[0]}, {image_shape[1]})"
            )
        if y.dtype != np.uint8 or y.ndim != 1:
            raise DatasetError(f"{title}: {labels_path} holds {y.dtype} {y.shape}, "
                               "expected uint8 (N,)")
        if len(x) != len(y):
            raise DatasetError(f"{title}: {images_path} has {len(x)} images but "
                               f"{labels_path} has {len(y)} labels")
        if y.size and y.max() >= num_classes:
            raise DatasetError(f"{title}: {labels_path} contains label {y.max()}, "
                               f"expected labels 0..{num_classes - 1}")
        splits.append((x, y))
    return tuple(splits)
