"""Label and array helpers with Keras 3's names, arguments and results (``keras.utils``)."""

import math

import numpy as np

from .. import validation


def to_categorical(x, num_classes=None):
    """One-hot rows for integer class ids, as ``keras.utils.to_categorical``.

    Parameters
    ----------
    x : array-like of int, shape (...,) or (..., 1)
        Class ids in ``[0, num_classes)``; a trailing axis of length 1 is dropped, as in Keras.
    num_classes : int, optional
        Number of classes; defaults to ``max(x) + 1``.

    Returns
    -------
    np.ndarray float64, shape (..., num_classes)
        ``out[..., k] = 1`` where ``x == k``, else 0 (float64 like Keras's NumPy path; ``fit`` casts to
        the network's dtype).
    """
    ids = np.asarray(x)
    if ids.dtype.kind not in "biuf" or ids.dtype.kind == "b":
        raise validation.ArgumentError(
            f"to_categorical: x must hold integer class ids, got an array of dtype {ids.dtype}")
    if ids.dtype.kind == "f":
        if not np.all(np.isfinite(ids)) or not np.all(ids == np.floor(ids)):
            raise validation.ArgumentError("to_categorical: x must hold integer class ids, got "
                                           f"non-integer values such as {ids[ids != np.floor(ids)][:3]}")
    ids = ids.astype(np.int64)
    shape = ids.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    ids = ids.reshape(-1)
    if num_classes is None:
        if ids.size == 0:
            raise validation.ArgumentError("to_categorical: give num_classes for an empty x")
        num_classes = int(ids.max()) + 1
    num_classes = validation.positive_int(num_classes, "num_classes", "to_categorical")
    validation.array_elements((ids.size, num_classes), "the one-hot result", "to_categorical")
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise validation.ArgumentError(
            f"to_categorical: class ids must lie in [0, {num_classes}), got values in "
            f"[{ids.min()}, {ids.max()}]")
    categorical = np.zeros((ids.size, num_classes))
    categorical[np.arange(ids.size), ids] = 1
    return categorical.reshape(shape + (num_classes,))


def normalize(x, axis=-1, order=2):
    """``x`` divided by its ``order``-norm along ``axis``, as ``keras.utils.normalize``.

    Zero vectors stay zero (their norm is taken as 1). ``x`` is any float array, e.g. (N, features);
    the result has its shape.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":
        raise validation.ArgumentError(f"normalize: x must be numeric, got an array of dtype {x.dtype}")
    if x.ndim == 0:
        raise validation.ArgumentError("normalize: x must have at least one axis, got a scalar")
    axis = validation.integer(axis, "axis", "normalize", minimum=-max(x.ndim, 1),
                              maximum=max(x.ndim, 1) - 1)
    # np.linalg.norm's vector orders: None (2), any number, +-inf; NaN and non-numbers refused.
    if order is not None and not (validation.is_real(order) and not math.isnan(order)):
        validation.fail("normalize", "order", "None or a number (inf included)", order)
    order = None if order is None else float(order)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis, keepdims=True))
    norm[norm == 0] = 1
    return x / norm
