"""Batch metrics: accuracy variants, top-k accuracy, regression errors and a confusion matrix.

Every metric function takes ``(y_true, y_pred)`` for one batch and returns a Python float averaged
over that batch; the training loop averages batches weighted by their size. ``get(name)`` returns a
:class:`Metric`, a named callable, for the names Keras accepts in ``metrics=[...]``.

``Precision``, ``Recall``, ``AUC`` and ``F1Score`` are stateful (:mod:`modularcnn.stateful_metrics`):
they count across batches, and the loop logs their ``result()`` instead of a mean of batches.
"""

import inspect
import re

import numpy as np

from . import validation
from .catalog import Catalog, Configurable
from .mathutils import align_to, as_float_array
from .stateful_metrics import AUC, F1Score, Precision, Recall, StatefulMetric

__all__ = [
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "top_k_accuracy",
    "top_k_categorical_accuracy",
    "mean_squared_error",
    "mean_absolute_error",
    "confusion_matrix",
    "Metric",
    "StatefulMetric",
    "Precision",
    "Recall",
    "AUC",
    "F1Score",
    "get",
    "serialize",
]


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _scores(y_pred, what):
    """Validate class scores, shape (N, K) with N >= 1."""
    y_pred = as_float_array(y_pred)
    if y_pred.ndim != 2 or y_pred.shape[0] == 0:
        raise ValueError(
            f"{what}: expected y_pred with shape (N, K) and N >= 1, received shape {y_pred.shape}."
        )
    return y_pred


def _true_class_ids(y_true, n, k, what):
    """Return integer class ids, shape (N,), from ids (N,) / (N, 1) or one-hot targets (N, K)."""
    y_true = np.asarray(y_true)
    if y_true.shape == (n, k) and k > 1:
        return np.argmax(y_true, axis=1)
    if y_true.shape in ((n,), (n, 1)):
        ids = y_true.reshape(n)
        if ids.dtype.kind not in "biuf":
            raise ValueError(f"{what}: class ids in y_true must be numbers, got dtype {ids.dtype}")
        if not np.issubdtype(ids.dtype, np.integer):
            if not np.all(np.floor(ids) == ids):
                raise ValueError(
                    f"{what}: class ids in y_true must be integers, received {ids[:5]}..."
                )
            ids = ids.astype(np.int64)
        if np.any((ids < 0) | (ids >= k)):
            raise ValueError(
                f"{what}: class ids must lie in [0, {k}) for y_pred with {k} classes, "
                f"received values in [{ids.min()}, {ids.max()}]."
            )
        return ids
    raise ValueError(
        f"{what}: expected y_true as class ids with shape ({n},) or one-hot with shape {(n, k)}, "
        f"received shape {y_true.shape}."
    )


# --------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------


def categorical_accuracy(y_true, y_pred):
    """Fraction of samples whose highest score is the true class.

    Parameters
    ----------
    y_true : (N,) / (N, 1) integer class ids, or (N, K) one-hot targets
    y_pred : (N, K) probabilities or logits (only their order matters)
    """
    y_pred = _scores(y_pred, "categorical_accuracy")
    ids = _true_class_ids(y_true, *y_pred.shape, "categorical_accuracy")
    return float(np.mean(np.argmax(y_pred, axis=1) == ids))


def sparse_categorical_accuracy(y_true, y_pred):
    """Same as :func:`categorical_accuracy` (ids and one-hot targets are both accepted)."""
    return categorical_accuracy(y_true, y_pred)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Fraction of outputs on the correct side of ``threshold``, over every output of every sample.

    Parameters
    ----------
    y_true : same shape as y_pred (a missing trailing axis of length 1 is accepted), values 0/1
    y_pred : (N,), (N, 1), (N, K) or any (N, ...) (e.g. (N, H, W, 1) masks) probabilities (use
        ``threshold=0`` for logits)
    """
    y_pred = as_float_array(y_pred)
    y_true = np.asarray(y_true)
    if y_pred.ndim == 0 or y_pred.shape[0] == 0:
        raise ValueError(
            f"binary_accuracy: expected y_pred with shape (N, ...), N >= 1, "
            f"received shape {y_pred.shape}."
        )
    threshold = validation.real(threshold, "threshold", "binary_accuracy")
    y_true = align_to(y_true, y_pred, "binary_accuracy")
    return float(np.mean((y_pred > threshold) == (y_true > 0.5)))


def accuracy(y_true, y_pred):
    """Accuracy for either task, chosen from y_pred's shape.

    * y_pred (N, K) with K > 1: :func:`categorical_accuracy` (argmax vs ids or one-hot y_true);
    * y_pred (N,), (N, 1) or any (N, ..., 1), e.g. (N, H, W, 1) masks: :func:`binary_accuracy`
      with threshold 0.5.
    """
    y_pred = as_float_array(y_pred)
    if y_pred.ndim == 1 or (y_pred.ndim >= 2 and y_pred.shape[-1] == 1):
        return binary_accuracy(y_true, y_pred)
    return categorical_accuracy(y_true, y_pred)


def top_k_accuracy(y_true, y_pred, k=5):
    """Fraction of samples whose true class is among the ``k`` highest scores.

    A tie at the boundary counts in the sample's favour (as in ``tf.math.in_top_k``): the sample
    is correct when fewer than ``k`` classes score strictly higher than the true class.

    Parameters
    ----------
    y_true : (N,) / (N, 1) integer class ids, or (N, K) one-hot targets
    y_pred : (N, K) scores
    k : int >= 1
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"top_k_accuracy: k must be a positive integer, received {k!r}.")
    y_pred = _scores(y_pred, "top_k_accuracy")
    n, num_classes = y_pred.shape
    ids = _true_class_ids(y_true, n, num_classes, "top_k_accuracy")
    true_scores = y_pred[np.arange(n), ids][:, None]
    higher = np.sum(y_pred > true_scores, axis=1)
    return float(np.mean(higher < k))


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """Same as :func:`top_k_accuracy` (Keras's name for one-hot targets)."""
    return top_k_accuracy(y_true, y_pred, k=k)


# --------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------


def _regression_pair(y_true, y_pred, what):
    y_pred = as_float_array(y_pred)
    y_true = np.asarray(y_true)
    y_true = align_to(y_true, y_pred, what)
    if y_pred.size == 0:
        raise ValueError(f"{what}: received an empty batch.")
    return np.asarray(y_true, dtype=y_pred.dtype), y_pred


def mean_squared_error(y_true, y_pred):
    """``mean((y_pred - y_true) ** 2)`` over all elements."""
    y_true, y_pred = _regression_pair(y_true, y_pred, "mean_squared_error")
    return float(np.mean((y_pred - y_true) ** 2))


def mean_absolute_error(y_true, y_pred):
    """``mean(|y_pred - y_true|)`` over all elements."""
    y_true, y_pred = _regression_pair(y_true, y_pred, "mean_absolute_error")
    return float(np.mean(np.abs(y_pred - y_true)))


# --------------------------------------------------------------------------------------------
# Confusion matrix
# --------------------------------------------------------------------------------------------


def _class_id_vector(labels, what):
    """Class ids, shape (N,), from ids (N,) / (N, 1) or scores / one-hot (N, K) (via argmax)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        return np.argmax(labels, axis=1)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)
    if labels.ndim != 1:
        raise ValueError(
            f"confusion_matrix: expected {what} as class ids (N,) or scores (N, K), "
            f"received shape {labels.shape}."
        )
    if np.issubdtype(labels.dtype, np.integer):
        if labels.dtype == np.uint64 and labels.size and labels.max() > np.iinfo(np.int64).max:
            raise ValueError(f"confusion_matrix: {what} holds class ids beyond int64, max "
                             f"{labels.max()}.")
    elif not (np.issubdtype(labels.dtype, np.floating) or labels.dtype == np.bool_) or not np.all(
            np.isfinite(labels) & (np.floor(labels) == labels)):
        raise ValueError(f"confusion_matrix: {what} must hold finite integer class ids, "
                         f"received dtype {labels.dtype}.")
    # int64 whatever came: uint8 labels (what mnist.load_data returns) cannot hold -1 or i * K + j.
    return labels.astype(np.int64, copy=False)


def confusion_matrix(y_true, y_pred_classes, num_classes=None):
    """Count (true class, predicted class) pairs.

    Parameters
    ----------
    y_true : (N,) class ids (or (N, K) one-hot, reduced with argmax)
    y_pred_classes : (N,) predicted class ids (or (N, K) scores, reduced with argmax)
    num_classes : int or None
        K; defaults to ``max(label) + 1`` over both arrays.

    Returns
    -------
    np.ndarray int64, shape (K, K)
        ``matrix[i, j]`` = number of samples of true class ``i`` predicted as class ``j``.
    """
    true_ids = _class_id_vector(y_true, "y_true")
    pred_ids = _class_id_vector(y_pred_classes, "y_pred_classes")
    if true_ids.shape != pred_ids.shape:
        raise ValueError(
            f"confusion_matrix: y_true has {true_ids.shape[0]} samples but y_pred_classes has "
            f"{pred_ids.shape[0]}."
        )
    if num_classes is None:
        num_classes = int(max(true_ids.max(initial=-1), pred_ids.max(initial=-1))) + 1
    else:
        num_classes = validation.positive_int(num_classes, "num_classes", "confusion_matrix")
    validation.array_elements((num_classes, num_classes), "the matrix", "confusion_matrix")
    for ids, what in ((true_ids, "y_true"), (pred_ids, "y_pred_classes")):
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            raise ValueError(
                f"confusion_matrix: {what} ids must lie in [0, {num_classes}), "
                f"received values in [{ids.min()}, {ids.max()}]."
            )
    # Each (i, j) pair becomes the single index i * K + j; bincount counts them all at once.
    flat = np.bincount(true_ids * num_classes + pred_ids, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------
# Named metric objects
# --------------------------------------------------------------------------------------------

_FUNCTIONS = {
    fn.__name__: fn
    for fn in (
        accuracy,
        binary_accuracy,
        categorical_accuracy,
        sparse_categorical_accuracy,
        top_k_accuracy,
        top_k_categorical_accuracy,
        mean_squared_error,
        mean_absolute_error,
    )
}

# name -> (function name, keyword options)
_ALIASES = {
    "accuracy": ("accuracy", {}),
    "acc": ("accuracy", {}),
    "binary_accuracy": ("binary_accuracy", {}),
    "categorical_accuracy": ("categorical_accuracy", {}),
    "sparse_categorical_accuracy": ("sparse_categorical_accuracy", {}),
    "top_k_accuracy": ("top_k_accuracy", {"k": 5}),
    "top_k_categorical_accuracy": ("top_k_categorical_accuracy", {"k": 5}),
    "sparse_top_k_categorical_accuracy": ("top_k_accuracy", {"k": 5}),
    "mse": ("mean_squared_error", {}),
    "mean_squared_error": ("mean_squared_error", {}),
    "mae": ("mean_absolute_error", {}),
    "mean_absolute_error": ("mean_absolute_error", {}),
}
_TOP_K_NAME = re.compile(r"top_(\d+)_accuracy")
#: Names of the stateful metrics (their defaults), as Keras's ``metrics=["precision", "auc"]``.
_STATEFUL = {"precision": Precision, "recall": Recall, "auc": AUC, "f1_score": F1Score}


class Metric(Configurable):
    """A named batch metric: one of this module's functions with fixed keyword options.

    ``Metric("top_k_accuracy", name="top_3_accuracy", k=3)(y_true, y_pred) -> float``

    Parameters
    ----------
    function : str
        Name of a metric function in this module, e.g. ``"accuracy"``.
    name : str or None
        Key used in logs and history; defaults to ``function``.
    **options
        Keyword arguments passed to the function (``k``, ``threshold``).
    """

    def __init__(self, function, name=None, **options):
        if function not in _FUNCTIONS:
            raise ValueError(
                f"Unknown metric function {function!r}. Valid: {', '.join(sorted(_FUNCTIONS))}."
            )
        try:
            inspect.signature(_FUNCTIONS[function]).bind(None, None, **options)
        except TypeError as err:
            raise ValueError(f"Metric {function!r}: invalid options {options}: {err}.") from None
        self.function = function
        self.name = name if name is not None else function
        self.options = dict(options)

    def __call__(self, y_true, y_pred):
        """Return the metric for one batch, as a Python float."""
        return _FUNCTIONS[self.function](y_true, y_pred, **self.options)

    def get_config(self):
        return {"function": self.function, "name": self.name, **self.options}


def _all_names():
    return sorted(set(_ALIASES) | set(_STATEFUL) | {"top_<k>_accuracy"})


def get(identifier):
    """Return a :class:`Metric`.

    Parameters
    ----------
    identifier : str, Metric or dict
        A name, case-insensitive: ``"accuracy"``/``"acc"``, ``"sparse_categorical_accuracy"``,
        ``"categorical_accuracy"``, ``"binary_accuracy"``, ``"top_k_accuracy"`` (k=5),
        ``"top_k_categorical_accuracy"`` (k=5), ``"top_<k>_accuracy"`` (e.g. ``"top_5_accuracy"``),
        ``"mse"``, ``"mae"``; a Metric (returned unchanged); or a config dict
        ``{"class_name": "Metric", "config": {...}}`` from :func:`serialize`.
        The returned metric's ``.name`` is the name given (lower-cased).
    """
    if isinstance(identifier, (Metric, StatefulMetric)):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, StatefulMetric):
        return identifier()
    if isinstance(identifier, str):
        name = identifier.strip().lower()
        if name in _STATEFUL:
            return _STATEFUL[name]()
        if name in _ALIASES:
            function, options = _ALIASES[name]
            return Metric(function, name=name, **options)
        match = _TOP_K_NAME.fullmatch(name)
        if match and int(match.group(1)) >= 1:
            return Metric("top_k_accuracy", name=name, k=int(match.group(1)))
        raise ValueError(f"Unknown metric {identifier!r}. Valid names: {', '.join(_all_names())}.")
    return _CATALOG.get(identifier)


def serialize(metric):
    """Return ``{"class_name": "Metric" (or "Precision", ...), "config": ...}``; ``get`` turns it back
    into the same metric."""
    if isinstance(metric, StatefulMetric):
        return {"class_name": type(metric).__name__, "config": metric.get_config()}
    return _CATALOG.serialize(metric)


# Names are this module's own (aliases with options, top_<k>_accuracy); instances and configs go
# through the catalog like every other configurable object.
_CATALOG = Catalog("metric", Metric, (Metric, Precision, Recall, AUC, F1Score))
