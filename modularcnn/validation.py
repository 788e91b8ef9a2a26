"""One place that checks constructor and method arguments, so every layer refuses bad values alike.

Each checker takes ``(value, name, owner)`` and returns the value in its canonical form (a Python
``int``, ``float``, tuple or ``numpy.dtype``), or raises :class:`~modularcnn.errors.ArgumentError` (a
``ValueError``) whose message names the owner, the argument, what was expected and what came::

    >>> from modularcnn.validation import positive_int
    >>> positive_int(np.int64(3), "filters", "Conv2D")
    3
    >>> positive_int(28.7, "units", "Dense")
    Traceback (most recent call last):
    ...
    modularcnn.errors.ArgumentError: Dense: units must be a positive int, got 28.7 (float)

The rules are the same everywhere: integers may be Python or NumPy integers but never ``bool`` (``True``
is not a size), nor floats (``28.7`` is not silently truncated to 28), nor strings; real numbers may be
ints or floats but never ``bool``, strings or NaN; ``allow_none=True`` lets ``None`` through unchanged
where an argument is optional.

The module also holds the library's size bound, :data:`MAX_ARRAY_ELEMENTS`: a layer never creates a
parameter array with more elements than that (:func:`array_elements`), so ``Dense(10**9)`` gets a clear
error instead of a ``MemoryError`` or an hour of swapping.
"""

import math
import numbers
import os

import numpy as np

from .errors import ArgumentError


#: The largest parameter array (in elements) a layer creates: 2**31, i.e. 8 GiB of float32. Larger
#: requests (``Dense(10**9)`` after a 784-wide input, a model file declaring such a layer) are refused
#: before anything is allocated.
MAX_ARRAY_ELEMENTS = 2**31


def describe_value(value):
    """``"28.7 (float)"``: how error messages quote what came (the type tells ``"3"`` from ``3``)."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def fail(owner, name, expected, value):
    """Raise the library's ArgumentError: ``"{owner}: {name} must be {expected}, got {value}"``."""
    raise ArgumentError(f"{owner}: {name} must be {expected}, got {describe_value(value)}")


def is_integer(value):
    """True for Python and NumPy integers, False for bools (``True`` is not a size) and everything else."""
    if type(value) is int:  # the common case, without the ABC check (it is on every predict call)
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    """True for ints and floats (Python or NumPy) that are not bools; NaN included (checked apart)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def integer(value, name, owner, *, minimum=None, maximum=None, allow_none=False):
    """``value`` as a Python int within ``[minimum, maximum]`` (each bound optional)."""
    if value is None and allow_none:
        return None
    expected = _int_range_text(minimum, maximum)
    if not is_integer(value):
        fail(owner, name, expected, value)
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        fail(owner, name, expected, value)
    return value


def _int_range_text(minimum, maximum):
    if minimum == 1 and maximum is None:
        return "a positive int"
    if minimum == 0 and maximum is None:
        return "a non-negative int"
    if minimum is not None and maximum is not None:
        return f"an int in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"an int >= {minimum}"
    if maximum is not None:
        return f"an int <= {maximum}"
    return "an int"


def positive_int(value, name, owner, *, allow_none=False):
    """``value`` as an int >= 1 (NumPy integers accepted; bools, floats, strings and None refused)."""
    return integer(value, name, owner, minimum=1, allow_none=allow_none)


def non_negative_int(value, name, owner, *, allow_none=False):
    """``value`` as an int >= 0."""
    return integer(value, name, owner, minimum=0, allow_none=allow_none)


def real(value, name, owner, *, minimum=None, maximum=None, min_inclusive=True, max_inclusive=True,
         allow_none=False, expected=None):
    """``value`` as a finite Python float within the given bounds (NaN and infinities refused).

    ``expected`` overrides the generated description (e.g. ``"a probability in [0, 1)"``).
    """
    if value is None and allow_none:
        return None
    if expected is None:
        expected = _real_range_text(minimum, maximum, min_inclusive, max_inclusive)
    if not is_real(value):
        fail(owner, name, expected, value)
    number = float(value)
    if not math.isfinite(number):
        fail(owner, name, expected, value)
    if minimum is not None and (number < minimum or (number == minimum and not min_inclusive)):
        fail(owner, name, expected, value)
    if maximum is not None and (number > maximum or (number == maximum and not max_inclusive)):
        fail(owner, name, expected, value)
    return number


def _real_range_text(minimum, maximum, min_inclusive, max_inclusive):
    if minimum is not None and maximum is not None:
        return (f"a number in {'[' if min_inclusive else '('}{minimum:g}, "
                f"{maximum:g}{']' if max_inclusive else ')'}")
    if minimum is not None:
        if minimum == 0:
            return "a non-negative number" if min_inclusive else "a positive number"
        return f"a number {'>=' if min_inclusive else '>'} {minimum:g}"
    if maximum is not None:
        return f"a number {'<=' if max_inclusive else '<'} {maximum:g}"
    return "a finite number"


def positive_number(value, name, owner, *, allow_none=False):
    """``value`` as a finite float > 0 (a learning rate, an epsilon)."""
    return real(value, name, owner, minimum=0, min_inclusive=False, allow_none=allow_none)


def non_negative_number(value, name, owner, *, allow_none=False):
    """``value`` as a finite float >= 0 (a ``min_delta``, a weight decay)."""
    return real(value, name, owner, minimum=0, allow_none=allow_none)


def probability(value, name, owner, *, allow_one=False, allow_none=False):
    """``value`` as a float in ``[0, 1)`` (a dropout rate, a validation fraction); ``[0, 1]`` with
    ``allow_one=True`` (a momentum)."""
    return real(value, name, owner, minimum=0, maximum=1, max_inclusive=allow_one,
                allow_none=allow_none)


def boolean(value, name, owner):
    """``value`` as a bool: Python or NumPy bools only (``"False"`` is a non-empty string, not False)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    fail(owner, name, "True or False", value)


def one_of(value, name, owner, choices):
    """``value`` if it is one of ``choices`` (compared with ``==``), else an ArgumentError listing them."""
    if isinstance(value, (str, int, float, type(None))) and value in choices:
        return value
    fail(owner, name, "one of " + ", ".join(repr(c) for c in choices), value)


def int_tuple(value, rank, name, owner, *, minimum=1):
    """``value`` as a tuple of ``rank`` ints >= ``minimum``; a single int is repeated ``rank`` times.

    How window sizes and strides are given: ``3`` means ``(3, 3)`` for a 2-D layer.
    """
    expected = (f"an int or a tuple of {rank} ints, each "
                + ("positive" if minimum == 1 else f">= {minimum}"))
    if is_integer(value):
        values = (int(value),) * rank
    elif isinstance(value, (tuple, list)) and len(value) == rank and all(is_integer(v) for v in value):
        values = tuple(int(v) for v in value)
    else:
        fail(owner, name, expected, value)
    if any(v < minimum for v in values):
        fail(owner, name, expected, value)
    if any(v > MAX_ARRAY_ELEMENTS for v in values):  # no window or stride is longer than an array
        fail(owner, name, f"{expected}, at most {MAX_ARRAY_ELEMENTS:,}", value)
    return values


def shape_tuple(value, name, owner, *, allow_none=False, min_rank=1, max_rank=None, minimum=1):
    """``value`` as a tuple of ints each >= ``minimum`` (a per-sample shape, no batch axis).

    A list or tuple of ints is accepted (configs read back from JSON hold lists); a bare int, a string,
    a ``None`` or NaN entry, a float such as 28.7, and a tuple with more than :data:`MAX_ARRAY_ELEMENTS`
    elements in all are refused. The message suggests ``(28,)`` for a bare ``28``.
    """
    if value is None and allow_none:
        return None
    rank_text = f"{min_rank}+" if max_rank is None else (
        str(min_rank) if min_rank == max_rank else f"{min_rank} to {max_rank}")
    expected = (f"a tuple of {'positive' if minimum == 1 else f'>= {minimum}'} ints "
                f"({rank_text} entries, no batch axis)")
    if is_integer(value):
        fail(owner, name, expected + f" such as ({int(value)},)", value)
    if not isinstance(value, (tuple, list)):
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value.tolist()
        else:
            fail(owner, name, expected, value)
    if len(value) < min_rank or (max_rank is not None and len(value) > max_rank):
        fail(owner, name, expected, value)
    if not all(is_integer(d) and int(d) >= minimum for d in value):
        fail(owner, name, expected, value)
    shape = tuple(int(d) for d in value)
    if math.prod(shape) > MAX_ARRAY_ELEMENTS:
        fail(owner, name, f"at most {MAX_ARRAY_ELEMENTS:,} values per sample (MAX_ARRAY_ELEMENTS)", value)
    return shape


def float_dtype(value, name, owner):
    """``value`` as a floating NumPy dtype (``"float32"``, ``np.float64``, ...).

    ``None`` is refused: NumPy reads ``np.dtype(None)`` as float64, which would silently double the
    memory of a network meant to be float32.
    """
    expected = "a floating dtype such as 'float32' or 'float64'"
    if value is None or isinstance(value, (bool, int, float)):
        fail(owner, name, expected, value)
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError):  # np.dtype({...}) raises ValueError
        fail(owner, name, expected, value)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        # float16's 3-digit precision breaks training and long double has no BLAS: refused, not half-run.
        fail(owner, name, "float32 or float64", value)
    return dtype


def axis(value, name, owner, *, allow_none=False):
    """``value`` as an axis index, an int in [-64, 63] (NumPy arrays have at most 64 axes)."""
    return integer(value, name, owner, minimum=-64, maximum=63, allow_none=allow_none)


def file_path(value, name, owner, *, allow_none=False):
    """``value`` as a non-empty ``str`` path: a ``str`` or an ``os.PathLike`` such as ``pathlib.Path``
    (bytes paths are refused: the library writes str paths into messages and file names)."""
    if value is None and allow_none:
        return None
    expected = "a non-empty path (str or os.PathLike)"
    if isinstance(value, os.PathLike):
        text = os.fspath(value)
    else:
        text = value
    if not isinstance(text, str) or not text:
        fail(owner, name, expected, value)
    return text


def function(value, name, owner):
    """``value`` if it is callable (a ``print_fn``, a schedule), else an ArgumentError."""
    if not callable(value):
        fail(owner, name, "a callable", value)
    return value


def seed(value, name, owner):
    """``value`` as a non-negative int seed, or None (draw from the operating system)."""
    return integer(value, name, owner, minimum=0, allow_none=True)


def array_elements(shape, what, owner):
    """The number of elements of ``shape``, or an ArgumentError when it exceeds :data:`MAX_ARRAY_ELEMENTS`.

    Called before a layer allocates a parameter array, so an oversized layer fails with its size in the
    message instead of a bare ``MemoryError``.
    """
    count = math.prod(int(d) for d in shape)
    if count > MAX_ARRAY_ELEMENTS:
        raise ArgumentError(
            f"{owner}: {what} of shape {tuple(shape)} would hold {count:,} values, more than the "
            f"{MAX_ARRAY_ELEMENTS:,} (MAX_ARRAY_ELEMENTS) a layer may create"
        )
    return count


#: The padding modes of windowed layers (convolutions, pooling).
PADDING_MODES = ("valid", "same")


def normalize_tuple(value, rank, name, owner="argument"):
    """Return ``value`` as a tuple of ``rank`` positive ints (an int is repeated).

    ``owner`` names the layer in the error (an :class:`~modularcnn.errors.ArgumentError`).

    >>> normalize_tuple(3, 2, "filter_size")
    (3, 3)
    """
    return int_tuple(value, rank, name, owner)


def normalize_padding(pad, rank, owner="argument"):
    """Check a padding specification: ``"valid"``, ``"same"``, an int, a tuple of ints, or of pairs.

    Returns ``"valid"``, ``"same"``, or a tuple of ``rank`` ``(before, after)`` pairs of non-negative ints.
    """
    expected = (f"'valid', 'same', a non-negative int, or {rank} non-negative ints or "
                "(before, after) pairs")
    if isinstance(pad, str):
        mode = pad.lower()
        if mode not in PADDING_MODES:
            fail(owner, "padding", expected, pad)
        return mode
    if is_integer(pad):
        pairs = ((int(pad), int(pad)),) * rank
    else:
        if not isinstance(pad, (tuple, list)) or len(pad) != rank:
            fail(owner, "padding", expected, pad)
        pairs = []
        for item in pad:
            if is_integer(item):
                pairs.append((int(item), int(item)))
            elif (isinstance(item, (tuple, list)) and len(item) == 2
                  and all(is_integer(p) for p in item)):
                pairs.append((int(item[0]), int(item[1])))
            else:
                fail(owner, "padding", expected, pad)
        pairs = tuple(pairs)
    if any(p < 0 or p > MAX_ARRAY_ELEMENTS for pair in pairs for p in pair):
        fail(owner, "padding", expected + f", at most {MAX_ARRAY_ELEMENTS:,}", pad)
    return pairs
