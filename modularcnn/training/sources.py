"""Where batches come from: one interface over arrays, memmaps, HDF5 datasets, generators and Sequences.

``fit``, ``evaluate`` and ``predict`` turn whatever they are given into a *source* with
:func:`make_source` and then only ask it for batches:

- ``source.steps``: batches in one pass over the data (None for an iterator of unknown length);
- ``source.plan(rng, shuffle)``: the keys of one pass, drawn in the calling thread;
- ``source.load(key)``: that batch as a :class:`Batch` of arrays ready for a step (``x`` in the
  network's dtype and input shape, ``y`` prepared for the loss, ``sample_weight`` or None). ``load`` may
  run in a background thread (:mod:`modularcnn.training.prefetch`): it touches no random generator.

**Arrays** (:class:`ArraySource`): NumPy arrays of any numeric dtype, ``np.memmap``, ``h5py.Dataset``
and other array-likes with ``shape``, ``dtype`` and NumPy indexing are kept as they are; each batch is
read and converted to the network's dtype when it is taken, so a uint8 memmap larger than memory never
becomes a float copy. *Shuffling data on disk*: a shuffled batch is a random set of rows; they are
read in ascending row order (one forward sweep over the file, which is also what ``h5py`` requires)
and put back into the shuffled order in memory. The batches are therefore exactly the batches of the
same array in memory with the same seed, and the weights are bit-identical. ``shuffle="batch"`` (as in
Keras) instead shuffles the order of contiguous batches, for files where even sorted random rows are
slow. A validation split is a second view over the same rows (an index array), never a copy.

**Sequences** (:class:`SequenceSource`): a :class:`modularcnn.utils.Sequence` (or anything with
``__len__``, ``__getitem__`` and ``on_epoch_end``); ``shuffle=True`` shuffles the order of its batches.

**Iterators** (:class:`IteratorSource`): a generator or iterator yielding ``(x, y)``,
``(x, y, sample_weight)`` or, for ``predict``, ``x``. It is read exactly as far as needed.

Every batch from a Sequence or an iterator is checked (shape, dtype, finite values, targets for the
loss) and a bad one raises :class:`~modularcnn.errors.DataError` naming the batch, before the step
that would use it.
"""

import numbers
from collections import namedtuple

import h5py
import numpy as np

from .. import losses
from ..errors import DataError
from .data import as_targets, check_batch_size

#: One batch: ``x`` (n, *input_shape) in the network's dtype, ``y`` prepared targets or None,
#: ``sample_weight`` (n,) or None.
Batch = namedtuple("Batch", ["x", "y", "sample_weight"])


class Exhausted(Exception):
    """Raised by :meth:`IteratorSource.load` when the iterator has no more batches."""


# ------------------------------------------------------------------------------------------------
# Checking one batch
# ------------------------------------------------------------------------------------------------

def _finite(values):
    """True unless a floating-point ``values`` holds NaN or inf."""
    if values.dtype.kind != "f" or values.size == 0:
        return True
    # A NaN or inf makes the sum NaN or inf: one pass, no mask array. A sum that overflowed from
    # finite values is told apart by min and max, which are NaN or infinite exactly when some value is.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(values, axis=None)
    return bool(np.isfinite(total)) or bool(np.isfinite(values.min()) and np.isfinite(values.max()))


def input_batch(net, x, what):
    """``x`` as a contiguous ``(n, *input_shape)`` array of the network's dtype, or a DataError."""
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as error:
            raise DataError(f"{what}: x must be an array, got {type(x).__name__} ({error})") from None
    if x.dtype.kind not in "biuf":
        raise DataError(f"{what}: x must be numeric, got dtype {x.dtype}")
    expected = tuple(net.input_shape)
    if x.ndim == len(expected) and expected[-1] == 1 and tuple(x.shape[1:]) == expected[:-1]:
        x = x[..., None]  # grayscale (n, H, W) for an (H, W, 1) input
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise DataError(f"{what}: expected x of shape (n, {', '.join(map(str, expected))}), "
                        f"got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise DataError(f"{what}: the batch is empty (shape {tuple(x.shape)})")
    x = np.ascontiguousarray(x, dtype=net.dtype)
    if not _finite(x):
        raise DataError(f"{what}: x contains NaN or inf")
    return x


def weight_vector(weights, count, what):
    """``weights`` as a finite float64 vector ``(count,)``, or a DataError."""
    try:
        weights = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what}: sample_weight must be numbers, got {type(weights).__name__}") from None
    if weights.shape not in ((count,), (count, 1)):
        raise DataError(f"{what}: sample_weight must have shape ({count},), one weight per sample, "
                        f"got {weights.shape}")
    weights = weights.reshape(count)
    if not _finite(weights):
        raise DataError(f"{what}: sample_weight contains NaN or inf")
    return weights


class ClassWeights:
    """``class_weight={class id: weight}`` as a look-up from prepared targets to sample weights.

    Classes missing from the dict weigh 1, as in Keras. The targets' class of a sample is its id (or
    the arg-max of a one-hot row); for one sigmoid output it is ``y > 0.5``.
    """

    def __init__(self, net, class_weight):
        if not isinstance(class_weight, dict):
            raise ValueError(f"class_weight must be a dict {{class id: weight}}, got {class_weight!r}")
        if getattr(net, "structured", False):
            raise ValueError("class_weight is for models with one output (as in Keras); with several "
                             "inputs or outputs give sample_weight instead")
        out = tuple(net.output_shape)
        binary = isinstance(net.loss, losses.BinaryCrossentropy) and out == (1,)
        if not (binary or (isinstance(net.loss, losses.CategoricalCrossentropy) and len(out) == 1)):
            raise ValueError("class_weight needs class targets: a cross-entropy loss on an (N, K) "
                             f"output or binary cross-entropy on one output; this network outputs "
                             f"{out} with {type(net.loss).__name__}")
        classes = 2 if binary else out[0]
        self.table = np.ones(classes, dtype=np.float64)
        self.binary = binary
        for key, weight in class_weight.items():
            if isinstance(key, bool) or not isinstance(key, numbers.Integral) or not 0 <= key < classes:
                raise ValueError(f"class_weight: keys must be class ids in [0, {classes}), got {key!r}")
            if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not np.isfinite(weight):
                raise ValueError(f"class_weight: the weight of class {key} must be a finite number, "
                                 f"got {weight!r}")
            self.table[int(key)] = float(weight)

    def __call__(self, y):
        """Weights ``(n,)`` of prepared targets ``y``."""
        if self.binary:
            ids = (y.reshape(len(y)) > 0.5).astype(np.intp)
        elif y.ndim == 1:
            ids = y
        else:
            ids = y.argmax(axis=1)
        return self.table[ids]


def combine_weights(sample_weight, class_weights, y):
    """The weights a batch trains with: its sample weights times its class weights (either may be None)."""
    if class_weights is None:
        return sample_weight
    weights = class_weights(y)
    return weights if sample_weight is None else sample_weight * weights


class BatchChecker:
    """Checks and converts the batches a Sequence or iterator yields (``needs_targets`` for fit and
    evaluate; ``predict`` takes ``x`` alone and ignores anything else)."""

    def __init__(self, net, needs_targets, class_weights=None):
        self.net = net
        self.needs_targets = needs_targets
        self.class_weights = class_weights

    def __call__(self, item, what):
        x, y, weights = self._unpack(item, what)
        x = input_batch(self.net, x, what)
        if not self.needs_targets:
            return Batch(x, None, None)
        if y is None:
            raise DataError(f"{what}: yielded x without y; fit and evaluate need (x, y) or "
                            "(x, y, sample_weight)")
        try:
            y = as_targets(self.net, self.net.loss, y, len(x), f"{what} y")
        except DataError:
            raise
        except ValueError as error:
            raise DataError(str(error)) from None
        if weights is not None:
            weights = weight_vector(weights, len(x), what)
        return Batch(x, y, combine_weights(weights, self.class_weights, y))

    @staticmethod
    def _unpack(item, what):
        if isinstance(item, (tuple, list)):
            if not 1 <= len(item) <= 3:
                raise DataError(f"{what}: expected (x, y) or (x, y, sample_weight), got a "
                                f"{type(item).__name__} of {len(item)} items")
            x, y, weights = (tuple(item) + (None, None))[:3]
            return x, y, weights
        if isinstance(item, dict):
            raise DataError(f"{what}: dict batches are not supported; yield (x, y) or "
                            "(x, y, sample_weight)")
        return item, None, None


# ------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------

def _is_array_like(x):
    return isinstance(x, (np.ndarray, h5py.Dataset)) or (
        hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__getitem__")
        and not hasattr(x, "on_epoch_end"))


def _in_memory(x):
    return isinstance(x, np.ndarray) and not isinstance(x, np.memmap)


class ArraySource:
    """Batches of an array-like ``x`` (kept as it is) with in-memory targets and weights.

    Parameters
    ----------
    net : Net
    x : array-like (N, *input_shape) or (N, H, W) for an (H, W, 1) input
        ``np.ndarray`` of any numeric dtype, ``np.memmap``, ``h5py.Dataset``.
    y : array (N, ...), optional
        Prepared targets (see :func:`~modularcnn.training.data.as_targets`); None for ``predict``.
    sample_weight : array (N,), optional
    batch_size : int
    rows : int array, optional
        The rows of ``x`` this source covers, ascending (a validation split's two halves).
    """

    def __init__(self, net, x, y, sample_weight, batch_size, rows=None, what="x"):
        self.net, self.x, self.y, self.sample_weight = net, x, y, sample_weight
        self.batch_size = check_batch_size(batch_size)
        self.rows = rows
        self.what = what
        self.in_memory = _in_memory(x)
        self.count = len(x) if rows is None else len(rows)
        self.steps = -(-self.count // self.batch_size)
        self.check_finite = not self.in_memory and np.dtype(x.dtype).kind == "f"
        self.grayscale = len(x.shape) == len(net.input_shape)

    @classmethod
    def from_arrays(cls, net, x, y, sample_weight, batch_size, needs_targets, what="x"):
        """Check ``x`` (shape, dtype; finite when in memory), ``y`` and ``sample_weight``; builds the source."""
        x = check_array_input(net, x, what)
        if needs_targets:
            label = "y" if what == "x" else what.replace("x", "y")
            if y is None:
                raise ValueError(f"{label} is missing")
            if isinstance(y, (np.memmap, h5py.Dataset)):
                y = y[()]  # targets are small: one value or row per sample
            y = as_targets(net, net.loss, y, len(x), label)
            if sample_weight is not None:
                sample_weight = weight_vector(sample_weight, len(x), f"{what}: sample_weight")
        return cls(net, x, y, sample_weight, batch_size, what=what)

    def subset(self, rows, weighted=True):
        """The same data restricted to ``rows`` (ascending positions into this source), no copy of ``x``."""
        base = rows if self.rows is None else self.rows[rows]
        y = None if self.y is None else self.y[rows]
        weights = None if (self.sample_weight is None or not weighted) else self.sample_weight[rows]
        return ArraySource(self.net, self.x, y, weights, self.batch_size, rows=base, what=self.what)

    def plan(self, rng, shuffle):
        """The batches of one pass: slices (in order), or index arrays (shuffled rows)."""
        bounds = [(start, min(start + self.batch_size, self.count))
                  for start in range(0, self.count, self.batch_size)]
        if shuffle == "batch":
            return [slice(*bounds[k]) for k in rng.permutation(len(bounds))]
        if shuffle:
            order = rng.permutation(self.count)
            return [order[lo:hi] for lo, hi in bounds]
        return [slice(lo, hi) for lo, hi in bounds]

    def load(self, key):
        """The batch ``key`` (a slice or an index array of positions) as a :class:`Batch`."""
        x = self._read(key if self.rows is None else self.rows[key])
        y = None if self.y is None else self.y[key]
        weights = None if self.sample_weight is None else self.sample_weight[key]
        return Batch(x, y, weights)

    def _read(self, index):
        net = self.net
        shape = (len(range(*index.indices(len(self.x)))) if isinstance(index, slice) else len(index),
                 *net.input_shape)
        try:
            if isinstance(index, slice) or self.in_memory:
                rows = self.x[index]
                out = np.ascontiguousarray(rows, dtype=net.dtype).reshape(shape)
            else:
                # Rows from disk in ascending order, then put back where the shuffle wants them: the
                # same batch as in memory, read as one forward sweep (h5py requires ascending indices).
                order = np.argsort(index, kind="stable")
                rows = self.x[index[order]]
                out = np.empty(shape, dtype=net.dtype)
                out[order] = rows.reshape((len(index), *net.input_shape))
        except DataError:
            raise
        except (OSError, RuntimeError, ValueError, KeyError) as error:
            # h5py raises these when the file was closed or damaged after fit started.
            raise DataError(f"{self.what}: cannot read rows from {_describe(self.x)}: {error}") from None
        if self.check_finite and not _finite(out):
            raise DataError(f"{self.what} contains NaN or inf (in the rows of this batch)")
        return out


def _describe(x):
    if isinstance(x, h5py.Dataset):
        return "an h5py.Dataset"
    if isinstance(x, np.memmap):
        return f"a memory-mapped array ({getattr(x, 'filename', '?')})"
    return type(x).__name__


def check_array_input(net, x, what):
    """``x`` as an array-like kept as it is (memmaps and HDF5 datasets are not read), or a ValueError.

    In-memory arrays are checked for NaN and inf here (cheap, no copy); data on disk batch by batch.
    """
    if net.input_shape is None:
        raise ValueError("the network has no layers yet: add layers before calling it")
    if isinstance(x, h5py.Dataset) and not x.id.valid:
        raise DataError(f"{what} is an h5py.Dataset whose file is closed: keep the h5py.File open "
                        "while fit, evaluate or predict read it")
    if not _is_array_like(x):
        x = np.asarray(x)
    dtype = np.dtype(x.dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"{what}: input must be numeric, got an array of dtype {dtype}")
    shape, expected = tuple(x.shape), tuple(net.input_shape)
    grayscale = len(shape) == len(expected) and expected[-1] == 1 and shape[1:] == expected[:-1]
    if not grayscale and (len(shape) != len(expected) + 1 or shape[1:] != expected):
        raise ValueError(f"{net.name}: {what}: expected input of shape (N, {', '.join(map(str, expected))}), "
                         f"got {shape}")
    if shape[0] == 0:
        raise ValueError(f"{what} is empty: expected at least one sample, got shape {shape}")
    if _in_memory(x) and not _finite(x):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{what} contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    return x


def _sequence_length(sequence, what):
    try:
        length = len(sequence)
    except Exception as error:  # noqa: BLE001 - the user's __len__ may raise anything
        raise DataError(f"{what}: len() of the {type(sequence).__name__} failed: {error!r}") from error
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
        raise DataError(f"{what}: a {type(sequence).__name__} with __len__ {length!r} has no batches; "
                        "__len__ must return the number of batches, at least 1")
    return int(length)


class SequenceSource:
    """Batches of a :class:`~modularcnn.utils.Sequence`, by index; ``shuffle`` shuffles their order."""

    def __init__(self, net, sequence, checker, what="x"):
        self.sequence = sequence
        self.checker = checker
        self.what = what
        self.steps = _sequence_length(sequence, what)
        self.count = None

    def plan(self, rng, shuffle):
        steps = _sequence_length(self.sequence, self.what)  # it may change in on_epoch_end
        return list(rng.permutation(steps)) if shuffle else list(range(steps))

    def fetch(self, key):
        """The raw item ``sequence[key]`` (what a worker process returns)."""
        return self.sequence[int(key)]

    def check(self, item, key):
        return self.checker(item, f"{self.what}: batch {key} of the {type(self.sequence).__name__}")

    def load(self, key):
        return self.check(self.fetch(key), key)


class IteratorSource:
    """Batches of a generator or iterator, in the order it yields them."""

    def __init__(self, iterator, checker, what="x"):
        self.iterator = iterator
        self.checker = checker
        self.what = what
        self.steps = None
        self.count = None
        self.taken = 0

    def plan(self, rng, shuffle):
        return None  # as many as it yields

    def load(self, key):
        try:
            item = next(self.iterator)
        except StopIteration:
            raise Exhausted from None
        self.taken += 1
        return self.checker(item, f"{self.what}: batch {self.taken} of the generator")


def is_sequence(x):
    if isinstance(x, np.ndarray):  # the common case, without the import and attribute look-ups
        return False
    from ..utils.sequence import Sequence  # noqa: PLC0415 - utils imports nothing from training

    return isinstance(x, Sequence) or (
        hasattr(x, "__len__") and hasattr(x, "__getitem__") and hasattr(x, "on_epoch_end")
        and not _is_array_like(x))


def is_iterator(x):
    return hasattr(x, "__next__") and hasattr(x, "__iter__")


def make_source(net, x, y=None, sample_weight=None, batch_size=None, needs_targets=True, what="x"):
    """The source for ``x`` (and ``y``/``sample_weight`` when ``x`` is an array), or a ValueError.

    ``batch_size`` is only for arrays: a Sequence or generator makes its own batches, and passing one
    with them raises, as in Keras; so do ``y`` and ``sample_weight``, which they must yield instead.
    """
    if getattr(net, "structured", False):
        from . import structured  # noqa: PLC0415 - structured imports this module

        return structured.make_source(net, x, y, sample_weight, batch_size, needs_targets, what)
    if x is None:
        raise ValueError(f"{what} is missing")
    if is_sequence(x) or is_iterator(x):
        kind = "Sequence" if is_sequence(x) else "generator"
        for name, value in (("y", y), ("sample_weight", sample_weight), ("batch_size", batch_size)):
            if value is not None:
                raise ValueError(f"{what} is a {kind}, which yields its own batches: do not pass "
                                 f"{name} (yield (x, y) or (x, y, sample_weight) batches instead)")
        checker = BatchChecker(net, needs_targets)
        if kind == "Sequence":
            return SequenceSource(net, x, checker, what)
        return IteratorSource(x, checker, what)
    return ArraySource.from_arrays(net, x, y, sample_weight, batch_size or 32, needs_targets, what)


def apply_class_weights(source, class_weights):
    """Make ``source``'s batches weigh each sample by its class (for training only, as in Keras)."""
    if isinstance(source, ArraySource):
        source.sample_weight = combine_weights(source.sample_weight, class_weights, source.y)
    else:
        source.checker.class_weights = class_weights
