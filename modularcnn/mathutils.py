"""Numerically stable softmax, log-softmax and sigmoid on NumPy arrays.

All helpers work along the last axis, keep the input's floating dtype (float32 in, float32 out) and
never overflow: a logit of +-1e4 gives finite results without RuntimeWarnings.
"""

import numpy as np

__all__ = ["as_float_array", "align_to", "softmax", "log_softmax", "sigmoid", "log_sigmoid"]


def as_float_array(x):
    """Return ``x`` as a floating NumPy array without copying when it already is one.

    Integer and boolean inputs become float64; floating inputs keep their dtype so that float32 data
    is never silently upcast.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":  # strings, objects, complex: a ValueError, not astype's TypeError
        raise ValueError(f"expected an array of real numbers, got one of dtype {x.dtype}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x


def align_to(y_true, y_pred, owner):
    """``y_true`` reshaped to ``y_pred``'s shape when they differ only by a trailing axis of length one.

    ``(N,)`` against ``(N, 1)`` is accepted and resolved by reshaping, never by broadcasting (which would
    silently turn ``(N,) - (N, 1)`` into an ``(N, N)`` matrix); any other mismatch raises ValueError.
    """
    if y_true.shape == y_pred.shape:
        return y_true
    if y_true.shape + (1,) == y_pred.shape or y_true.shape == y_pred.shape + (1,):
        return y_true.reshape(y_pred.shape)
    raise ValueError(
        f"{owner}: expected y_true with the shape of y_pred {y_pred.shape}, "
        f"received shape {y_true.shape}."
    )


def log_softmax(z):
    """Log of the softmax along the last axis, computed with the log-sum-exp trick.

    Parameters
    ----------
    z : array, shape (..., K)
        Logits.

    Returns
    -------
    array, shape (..., K), same dtype as ``z``
        ``z - log(sum(exp(z)))`` along the last axis.
    """
    z = as_float_array(z)
    # Subtracting the row maximum makes every exponent <= 0, so exp never overflows and the
    # largest term is exactly 1, so the log of the sum is never log(0).
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def softmax(z):
    """Softmax along the last axis.

    Parameters
    ----------
    z : array, shape (..., K)
        Logits.

    Returns
    -------
    array, shape (..., K), same dtype as ``z``
        Non-negative values that sum to one along the last axis.
    """
    z = as_float_array(z)
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    e /= np.sum(e, axis=-1, keepdims=True)
    return e


def sigmoid(z):
    """Logistic function ``1 / (1 + exp(-z))``, elementwise, without overflow.

    Parameters
    ----------
    z : array, any shape

    Returns
    -------
    array, same shape and dtype as ``z``
    """
    z = as_float_array(z)
    # exp(-|z|) lies in (0, 1], so it cannot overflow. For z >= 0 the usual formula is used; for
    # z < 0 the algebraically equal exp(z) / (1 + exp(z)) avoids exp of a large positive number.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def log_sigmoid(z):
    """``log(sigmoid(z))``, elementwise, finite for any finite ``z``.

    Uses ``log(sigmoid(z)) = min(z, 0) - log1p(exp(-|z|))``.
    """
    z = as_float_array(z)
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))
