"""Checking and arranging training data: inputs, targets, validation splits and batches.

Everything here runs before the first weight update, so that bad input raises a ``ValueError`` saying
what was expected and what came, with nothing partially trained.
"""

import numpy as np

from .. import losses, validation


def as_inputs(net, x, what="x"):
    """``x`` as a finite array of the network's dtype and input shape ``(N, *input_shape)``."""
    if x is None:
        raise ValueError(f"{what} is missing")
    x = net.as_input(x)
    if x.shape[0] == 0:
        raise ValueError(f"{what} is empty: expected at least one sample, got shape {x.shape}")
    # min and max are NaN or infinite exactly when some value is: two fast passes, no mask array.
    if not (np.isfinite(x.min()) and np.isfinite(x.max())):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{what} contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    return x


def _first_bad(bad):
    """``"index 3 (value nan)"``-style position of the first True in a boolean mask, or None."""
    positions = np.argwhere(bad)
    if len(positions) == 0:
        return None
    return tuple(int(i) for i in positions[0])


def _check_class_ids(ids, what):
    """Class ids must be whole, finite numbers; the message quotes the first one that is not."""
    if ids.dtype.kind in "iub":
        return
    bad = ~np.isfinite(ids)
    bad[~bad] = ids[~bad] != np.round(ids[~bad])
    position = _first_bad(bad)
    if position is not None:
        raise ValueError(f"{what}: class ids must be whole numbers, got {ids[position].item()!r} at index "
                         f"{position[0]}")


#: How far a one-hot (or soft-label) row's sum may stray from 1: float32 rounding of ten soft labels
#: is ~1e-7, a typo in a hand-made row is ~0.1.
ROW_SUM_TOLERANCE = 1e-3


def _check_distributions(y, what):
    """One-hot or soft-label rows ``(N, K)``: finite, each value in [0, 1], each row summing to 1.

    Checked because softmax cross-entropy's gradient ``p - y`` is only right for rows that sum to 1:
    anything else trains to a wrong (or, with NaN, a NaN) network without an error.
    """
    finite = np.isfinite(y)
    position = _first_bad(~finite)
    if position is not None:
        raise ValueError(f"{what}: one-hot labels contain {y[position].item()} at index {position}")
    position = _first_bad((y < 0) | (y > 1))
    if position is not None:
        raise ValueError(f"{what}: one-hot labels must lie in [0, 1], got {y[position].item()} at index "
                         f"{position}")
    if y.shape[1] == 1:
        return  # a one-unit output: nothing to normalise over
    sums = y.sum(axis=1, dtype=np.float64)
    position = _first_bad(np.abs(sums - 1) > ROW_SUM_TOLERANCE)
    if position is not None:
        raise ValueError(f"{what}: each one-hot (or soft-label) row must sum to 1, row {position[0]} "
                         f"sums to {sums[position]:.6g}; give class ids (N,) for hard labels")


def as_targets(net, loss, y, count, what="y"):
    """Check ``y`` against the network's output and the loss; returns the array the loss takes.

    Classification (cross-entropy): integer class ids ``(N,)`` (or ``(N, 1)``) in ``[0, K)``, or one-hot
    rows ``(N, K)``. Binary cross-entropy: ``(N,)`` or ``(N, K)`` values in ``[0, 1]``. Other losses:
    the output's shape ``(N, *output_shape)`` (``(N,)`` for a single output).
    """
    if y is None:
        raise ValueError(f"{what} is missing")
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric labels or targets, got dtype {y.dtype}")
    if y.ndim == 0 or y.shape[0] != count:
        got = "a scalar" if y.ndim == 0 else f"{y.shape[0]} rows (shape {y.shape})"
        raise ValueError(f"x has {count} samples but {what} has {got}")
    out = tuple(net.output_shape)
    if isinstance(loss, losses.CategoricalCrossentropy):
        classes = out[-1]
        if len(out) != 1:
            raise ValueError(f"cross-entropy needs a (N, K) output, but the network outputs (N, {out})")
        if y.ndim == 1 or (y.shape[1:] == (1,) and classes > 1):
            ids = y.reshape(count)
            _check_class_ids(ids, what)
            low, high = ids.min(), ids.max()
            if low < 0 or high >= classes:
                raise ValueError(
                    f"{what}: class ids must lie in [0, {classes}) for a {classes}-class output, "
                    f"got values from {low} to {high}"
                )
            return ids.astype(np.intp)
        if y.shape[1:] != (classes,):
            raise ValueError(
                f"{what}: expected class ids ({count},) or one-hot rows ({count}, {classes}), got {y.shape}"
            )
        _check_distributions(y, what)
        return y.astype(net.dtype, copy=False)
    expected = (count,) + out
    if y.shape != expected:
        if y.size == int(np.prod(expected)) and (y.ndim == 1 or out == (1,)):
            y = y.reshape(expected)
        else:
            raise ValueError(f"{what}: expected shape {expected} to match the output, got {y.shape}")
    y = y.astype(net.dtype, copy=False)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{what} contains NaN or inf")
    if isinstance(loss, losses.BinaryCrossentropy) and (y.min() < 0 or y.max() > 1):
        raise ValueError(f"{what}: binary cross-entropy targets must lie in [0, 1], "
                         f"got values from {y.min()} to {y.max()}")
    return y


def class_ids(y):
    """Class ids of prepared targets for stratification, or None when targets are not classes.

    For several outputs (a :class:`~.rows.Rows`), the first output's classes.
    """
    if hasattr(y, "arrays"):
        y = y.arrays[0]
    if y.ndim == 1 and y.dtype.kind in "iu":
        return y
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return None


def check_validation_split(fraction):
    """``fraction`` as a float in [0, 1), or a ValueError."""
    return validation.probability(fraction, "validation_split", "Net.fit")


def validation_split_indices(y, fraction, rng):
    """Seeded random ``(train, validation)`` index arrays, stratified by class when ``y`` has classes.

    Each class contributes ``round(fraction * its count)`` samples, so ordered data (all zeros first,
    then all ones, ...) still gets a validation set with every class in proportion — unlike taking
    the last fraction, which Keras does.
    """
    fraction = check_validation_split(fraction)
    count = len(y)
    labels = class_ids(y)
    if labels is None:
        order = rng.permutation(count)
        n_val = int(round(fraction * count))
        val = order[:n_val]
    else:
        val = []
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            val.append(members[:int(round(fraction * len(members)))])
        val = np.concatenate(val)
    if fraction > 0 and len(val) == 0:
        raise ValueError(f"validation_split={fraction} of {count} samples leaves no validation sample")
    if len(val) == count:
        raise ValueError(f"validation_split={fraction} of {count} samples leaves no training sample")
    val = np.sort(val)
    mask = np.ones(count, dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


def check_batch_size(batch_size, owner="Net.fit"):
    """``batch_size`` as a positive int (0 is refused everywhere, not replaced by a default)."""
    return validation.positive_int(batch_size, "batch_size", owner)
