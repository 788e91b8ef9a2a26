"""Images stored as CSV rows: a label and the pixel values, one image per line.

The format of the original ``mnist_train.csv``-style files::

    label,1x1,1x2,...,28x28      <- optional header row
    5,0,0,...,0
    0,0,0,...,0
"""

import numpy as np

from .. import validation
from ._gzip import read_maybe_gzip
from .errors import DatasetError


def load_csv(path, label_column=0, image_shape=None, header="infer", dtype=np.uint8):
    """Read labelled images from a CSV file (plain or gzipped).

    Parameters
    ----------
    path : str or os.PathLike
    label_column : int
        Index of the label column (negative counts from the end); the other columns are
        the pixels, in order.
    image_shape : tuple of int or None
        Shape of one image, e.g. ``(28, 28)`` or ``(28, 28, 1)``; its product must equal the
        number of pixel columns P. ``None`` keeps the rows flat.
    header : "infer", bool
        ``True``: the first line is a header; ``False``: there is none; ``"infer"``: the first
        line is a header if any of its cells is not a number.
    dtype : numpy dtype
        dtype of the returned pixels. Integer dtypes require integral values in range.

    Returns
    -------
    (x, y)
        ``x``: ``(N, *image_shape)`` or ``(N, P)`` of ``dtype``; ``y``: int64 ``(N,)``.

    Raises
    ------
    DatasetError
        Ragged rows, non-numeric cells, non-integral or negative labels, pixel values that do
        not fit ``dtype``, or no data rows. The message gives the file and line number.
    """
    if header not in ("infer", True, False):
        raise ValueError(f"load_csv: header must be 'infer', True or False, got {header!r}")
    path = validation.file_path(path, "path", "load_csv")
    label_column = validation.integer(label_column, "label_column", "load_csv")
    expected = "a numeric dtype such as np.uint8 or 'float32'"
    if dtype is None or isinstance(dtype, (bool, int, float)):  # np.dtype(None) is float64
        validation.fail("load_csv", "dtype", expected, dtype)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        validation.fail("load_csv", "dtype", expected, dtype)
    if dtype.kind not in "iuf":
        validation.fail("load_csv", "dtype", expected, dtype)
    if image_shape is not None:
        # One int is a flat image of that many pixels; 2.7 is not silently 2 (validation's rules).
        image_shape = validation.shape_tuple(
            (image_shape,) if validation.is_integer(image_shape) else image_shape,
            "image_shape", "load_csv")
    try:
        text = read_maybe_gzip(path).decode("utf-8")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not a UTF-8 text file ({error})") from error

    # (line number, text) of every non-blank line; line numbers count from 1 like editors.
    rows = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()]
    if rows and (header is True or (header == "infer" and not _is_numeric_row(rows[0][1]))):
        rows = rows[1:]
    if not rows:
        raise DatasetError(f"{path}: no data rows")

    _check_rectangular(path, rows)
    table = _parse_numbers(path, rows)  # float64 (N, columns)

    n_columns = table.shape[1]
    if not -n_columns <= label_column < n_columns:
        raise ValueError(f"load_csv: label_column={label_column} is out of range for "
                         f"{n_columns} columns in {path}")
    label_column %= n_columns
    labels = table[:, label_column]
    pixels = np.delete(table, label_column, axis=1)

    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | ~np.isfinite(labels))
    if bad.size:
        number = rows[bad[0]][0]
        raise DatasetError(f"{path}, line {number}: label {labels[bad[0]]:g} is not a "
                           "non-negative integer")
    x = _to_dtype(path, rows, pixels, dtype)
    if image_shape is not None:
        if int(np.prod(image_shape)) != pixels.shape[1]:
            raise DatasetError(f"{path}: rows have {pixels.shape[1]} pixel values, which "
                               f"cannot be reshaped to image_shape={image_shape}")
        x = x.reshape((len(x),) + image_shape)
    return x, labels.astype(np.int64)


def _is_numeric_row(line):
    try:
        for cell in line.split(","):
            float(cell)
    except ValueError:
        return False
    return True


def _check_rectangular(path, rows):
    expected = rows[0][1].count(",") + 1
    for number, line in rows:
        found = line.count(",") + 1
        if found != expected:
            raise DatasetError(f"{path}, line {number}: {found} values, expected {expected} "
                               f"like line {rows[0][0]} (ragged rows)")


def _parse_numbers(path, rows):
    try:
        return np.loadtxt([line for _, line in rows], delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError:
        pass
    # Slow path, only to say exactly which cell is wrong.
    for number, line in rows:
        for column, cell in enumerate(line.split(","), start=1):
            try:
                float(cell)
            except ValueError:
                raise DatasetError(f"{path}, line {number}, column {column}: "
                                   f"{cell.strip()!r} is not a number") from None
    raise DatasetError(f"{path}: numpy could not parse the file as numbers")


def _to_dtype(path, rows, pixels, dtype):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        bad = (pixels != np.round(pixels)) | (pixels < info.min) | (pixels > info.max)
        bad = np.flatnonzero(bad.any(axis=1) | ~np.isfinite(pixels).all(axis=1))
        if bad.size:
            row = pixels[bad[0]]
            value = row[(row != np.round(row)) | (row < info.min) | (row > info.max)
                        | ~np.isfinite(row)][0]
            raise DatasetError(f"{path}, line {rows[bad[0]][0]}: pixel value {value:g} does not "
                               f"fit {dtype.name} (integers {info.min}..{info.max})")
    return pixels.astype(dtype)
