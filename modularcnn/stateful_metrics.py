"""Stateful metrics: ``Precision``, ``Recall``, ``AUC`` and ``F1Score``, as Keras 3 defines them.

A batch average of precision is not the precision of the epoch, so these metrics keep counts
(true/false positives and negatives, per threshold or per class) across batches:
``update_state(y_true, y_pred)`` adds a batch, ``result()`` is the figure over everything added
since ``reset_state()``. ``fit`` and ``evaluate`` reset them at the start of every epoch and
evaluation and log ``result()`` after each batch; the data-parallel workers send their outputs back
to the training process, where the metrics are updated, so ``workers=N`` logs what one process does.
Calling a metric, ``metric(y_true, y_pred)``, gives the figure of that one batch and leaves the
state alone.

Targets: ``y_true`` has ``y_pred``'s shape (0/1 entries: one-hot rows or multi-label), or it holds
integer class ids ``(N,)`` for scores ``(N, K)``, which are one-hot encoded (a convenience Keras does
not offer). Every entry of ``y_pred`` is a binary decision, as in Keras.
"""

import numpy as np

from . import validation
from .catalog import Configurable
from .mathutils import align_to, as_float_array, sigmoid

#: Keras's margin around the thresholds 0 and 1 (so that scores of exactly 0 and 1 are counted).
EPSILON = 1e-7


class StatefulMetric(Configurable):
    """Base class: counts kept across batches. Subclasses define ``reset_state``, ``_update`` and
    ``result``; ``update_state`` checks the inputs first."""

    stateful = True

    def __init__(self, name):
        if not isinstance(name, str) or not name:
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string, got {name!r}")
        self.name = name
        self.reset_state()

    def reset_state(self):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add one batch: ``y_pred`` (N, ...) scores, ``y_true`` targets (see the module docstring);
        ``sample_weight`` (N,) weighs each sample's counts, as in Keras."""
        y_true, y_pred = self._pair(y_true, y_pred)
        weights = self._weights(sample_weight, len(y_pred), y_pred.shape)
        self._update(y_true, y_pred, weights)

    def __call__(self, y_true, y_pred):
        """The figure of this one batch (the state is left as it was)."""
        saved = self._state()
        try:
            self.reset_state()
            self.update_state(y_true, y_pred)
            return self.result()
        finally:
            self._restore(saved)

    def _state(self):
        return {key: np.copy(value) for key, value in vars(self).items() if key.startswith("_n_")}

    def _restore(self, saved):
        for key, value in saved.items():
            setattr(self, key, value)

    def _pair(self, y_true, y_pred):
        where = type(self).__name__
        y_pred = as_float_array(y_pred)
        if y_pred.ndim == 0 or y_pred.shape[0] == 0:
            raise ValueError(f"{where}: expected y_pred with shape (N, ...) and N >= 1, received "
                             f"shape {y_pred.shape}.")
        if not np.all(np.isfinite(y_pred)):
            raise ValueError(f"{where}: y_pred holds NaN or infinite scores.")
        y_true = np.asarray(y_true)
        if y_true.dtype.kind not in "biuf":
            raise ValueError(f"{where}: y_true must be numeric, received dtype {y_true.dtype}.")
        if y_pred.ndim == 2 and y_pred.shape[1] > 1 and y_true.shape in ((len(y_pred),),
                                                                         (len(y_pred), 1)):
            ids = y_true.reshape(-1)
            k = y_pred.shape[1]
            if np.any(ids != np.floor(ids)) or np.any((ids < 0) | (ids >= k)):
                raise ValueError(f"{where}: class ids in y_true must be integers in [0, {k}), "
                                 f"received values in [{ids.min()}, {ids.max()}].")
            y_true = np.eye(k)[ids.astype(np.intp)]
        y_true = align_to(y_true, y_pred, where)
        if np.any((y_true != 0) & (y_true != 1)):
            raise ValueError(f"{where}: y_true must hold 0/1 targets (or class ids), received values "
                             f"such as {np.unique(y_true)[:5]}.")
        return y_true.astype(bool), y_pred

    def _weights(self, sample_weight, n, shape):
        if sample_weight is None:
            return np.ones(shape)
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.shape not in ((n,), (n, 1)) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(f"{type(self).__name__}: sample_weight must be {n} finite non-negative "
                             f"numbers, received shape {weights.shape}.")
        return np.broadcast_to(weights.reshape((n,) + (1,) * (len(shape) - 1)), shape)


def _threshold(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
        raise ValueError(f"{where}: thresholds must be one number in [0, 1] (a list of thresholds "
                         f"gives one figure per threshold, which logs cannot show), received {value!r}.")
    return float(value)


#: The most thresholds AUC takes: a batch of N scores is compared with every one of them.
MAX_THRESHOLDS = 100_000

def _optional_int(value, what, where, minimum, maximum=None):
    return validation.integer(value, what, where, minimum=minimum, maximum=maximum, allow_none=True)


class _ConfusionAtThreshold(StatefulMetric):
    """True/false positives and false negatives at one threshold (or for the top-k scores)."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        where = type(self).__name__
        self.thresholds = 0.5 if thresholds is None else _threshold(thresholds, where)
        self.top_k = _optional_int(top_k, "top_k", where, 1)
        self.class_id = _optional_int(class_id, "class_id", where, 0)
        self._explicit_threshold = thresholds is not None
        super().__init__(_default_name(type(self)) if name is None else name)

    def reset_state(self):
        self._n_tp = np.zeros(())
        self._n_fp = np.zeros(())
        self._n_fn = np.zeros(())

    def _update(self, y_true, y_pred, weights):
        if self.class_id is not None:
            if y_pred.ndim != 2 or self.class_id >= y_pred.shape[1]:
                raise ValueError(f"{type(self).__name__}: class_id={self.class_id} needs y_pred of "
                                 f"shape (N, K) with K > {self.class_id}, received {y_pred.shape}.")
        if self.top_k is not None:
            # Keras: only the k highest scores of each row can be positive (and must pass the
            # threshold when one was given).
            order = np.argsort(-y_pred, axis=-1, kind="stable")[..., :self.top_k]
            top = np.zeros(y_pred.shape, dtype=bool)
            np.put_along_axis(top, order, True, axis=-1)
            predicted = top & (y_pred > self.thresholds) if self._explicit_threshold else top
        else:
            predicted = y_pred > self.thresholds
        if self.class_id is not None:
            y_true, predicted, weights = (a[:, self.class_id] for a in (y_true, predicted, weights))
        self._n_tp = self._n_tp + np.sum(weights * (predicted & y_true))
        self._n_fp = self._n_fp + np.sum(weights * (predicted & ~y_true))
        self._n_fn = self._n_fn + np.sum(weights * (~predicted & y_true))

    def get_config(self):
        return {"thresholds": self.thresholds if self._explicit_threshold else None,
                "top_k": self.top_k, "class_id": self.class_id, "name": self.name}


class Precision(_ConfusionAtThreshold):
    """``TP / (TP + FP)`` over every entry added since the last reset (0 when nothing is predicted
    positive), a prediction being positive when its score is above ``thresholds`` (0.5).

    Parameters
    ----------
    thresholds : float in [0, 1], optional
        0.5 by default.
    top_k : int, optional
        Only each row's ``top_k`` highest scores count as positive.
    class_id : int, optional
        Only column ``class_id`` of ``(N, K)`` scores counts.
    name : str, default "precision"
    """

    def result(self):
        total = self._n_tp + self._n_fp
        return float(self._n_tp / total) if total > 0 else 0.0


class Recall(_ConfusionAtThreshold):
    """``TP / (TP + FN)`` over every entry added since the last reset (0 without positives); the
    arguments are :class:`Precision`'s. Default name ``"recall"``."""

    def result(self):
        total = self._n_tp + self._n_fn
        return float(self._n_tp / total) if total > 0 else 0.0


class AUC(StatefulMetric):
    """Area under the ROC or precision-recall curve, from counts at ``num_thresholds`` thresholds,
    as Keras computes it.

    The thresholds are ``-1e-7, 1/(n-1), 2/(n-1), ..., (n-2)/(n-1), 1 + 1e-7``; a score is positive
    at a threshold it is above. ``curve="ROC"``: the trapezoidal rule over (false positive rate,
    recall) with ``summation_method="interpolation"``, the lower (``"minoring"``) or upper
    (``"majoring"``) Riemann sum otherwise. ``curve="PR"``: Davis & Goadrich's interpolation between
    thresholds (``"interpolation"``), or a Riemann sum over (recall, precision). With enough
    thresholds the ROC area is the probability that a positive scores above a negative.

    Parameters
    ----------
    num_thresholds : int > 1, default 200
    curve : "ROC" or "PR"
    summation_method : "interpolation", "minoring" or "majoring"
    from_logits : bool
        Scores are logits: a sigmoid is applied first.
    name : str, default "auc"
    multi_label : False
        Every entry of ``(N, K)`` scores is pooled into one curve (Keras's default); one curve per
        label is not supported.
    """

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None,
                 multi_label=False, from_logits=False):
        # Bounded: the counts and each batch's comparisons grow with it (Keras uses 200).
        self.num_thresholds = _optional_int(num_thresholds, "num_thresholds", "AUC", 2,
                                            MAX_THRESHOLDS)
        if self.num_thresholds is None:
            raise ValueError("AUC: num_thresholds must be an int >= 2, received None.")
        if not isinstance(curve, str) or curve.upper() not in ("ROC", "PR"):
            raise ValueError(f"AUC: curve must be 'ROC' or 'PR', received {curve!r}.")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError("AUC: summation_method must be 'interpolation', 'minoring' or 'majoring', "
                             f"received {summation_method!r}.")
        if multi_label is not False:
            raise ValueError("AUC: multi_label=True (one curve per label) is not supported; the "
                             "default pools every label into one curve.")
        if not isinstance(from_logits, bool):
            raise ValueError(f"AUC: from_logits must be True or False, received {from_logits!r}.")
        self.curve = curve.upper()
        self.summation_method = summation_method
        self.multi_label = False
        self.from_logits = from_logits
        inner = [(i + 1) / (self.num_thresholds - 1) for i in range(self.num_thresholds - 2)]
        self.thresholds = np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON])
        super().__init__("auc" if name is None else name)

    def reset_state(self):
        for key in ("_n_tp", "_n_fp", "_n_tn", "_n_fn"):
            setattr(self, key, np.zeros(self.num_thresholds))

    def _update(self, y_true, y_pred, weights):
        scores = sigmoid(y_pred) if self.from_logits else y_pred
        scores, truth, weights = scores.reshape(-1), y_true.reshape(-1), weights.reshape(-1)
        # Counts at every threshold at once: sort the scores, then a cumulative sum from the top
        # gives the weight of the scores above each threshold.
        order = np.argsort(scores, kind="stable")
        scores, truth, weights = scores[order], truth[order], weights[order]
        positive_weight = np.concatenate([[0.0], np.cumsum(weights * truth)])
        negative_weight = np.concatenate([[0.0], np.cumsum(weights * ~truth)])
        at_or_below = np.searchsorted(scores, self.thresholds, side="right")
        tp = positive_weight[-1] - positive_weight[at_or_below]
        fp = negative_weight[-1] - negative_weight[at_or_below]
        self._n_tp = self._n_tp + tp
        self._n_fp = self._n_fp + fp
        self._n_fn = self._n_fn + positive_weight[at_or_below]
        self._n_tn = self._n_tn + negative_weight[at_or_below]

    def result(self):
        tp, fp, tn, fn = self._n_tp, self._n_fp, self._n_tn, self._n_fn
        if self.curve == "PR" and self.summation_method == "interpolation":
            return _interpolated_pr_auc(tp, fp, fn)
        recall = _divide(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide(fp, fp + tn), recall
        else:
            x, y = recall, _divide(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.sum((x[:-1] - x[1:]) * heights))

    def get_config(self):
        return {"num_thresholds": self.num_thresholds, "curve": self.curve,
                "summation_method": self.summation_method, "name": self.name,
                "multi_label": self.multi_label, "from_logits": self.from_logits}


def _divide(a, b):
    """``a / b``, 0 where ``b`` is 0 (TensorFlow's ``divide_no_nan``)."""
    return np.divide(a, b, out=np.zeros(np.shape(a)), where=b > 0)


def _interpolated_pr_auc(tp, fp, fn):
    """Davis & Goadrich (2006): precision interpolated between thresholds, as Keras computes it."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _divide(dtp, np.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = np.ones_like(p[1:])
    np.divide(p[:-1], np.maximum(p[1:], 0), out=ratio, where=both)
    increments = slope * (dtp + intercept * np.log(ratio))
    return float(np.sum(_divide(increments, np.maximum(tp[1:] + fn[1:], 0))))


class F1Score(StatefulMetric):
    """The F1 score ``2 * precision * recall / (precision + recall)`` of each class, averaged.

    ``y_pred`` (N, K): with ``threshold=None`` (the default) each row's highest score is its
    prediction, otherwise every score above ``threshold`` is positive (multi-label). ``average``:
    ``"macro"`` (the mean over classes), ``"micro"`` (from the counts summed over classes),
    ``"weighted"`` (weighted by each class's number of true samples). Keras's default
    ``average=None`` (one score per class) is refused: a log entry holds one number.
    """

    def __init__(self, average="macro", threshold=None, name=None):
        if average not in ("macro", "micro", "weighted"):
            raise ValueError(f"F1Score: average must be 'macro', 'micro' or 'weighted' (None, one "
                             f"score per class, cannot be logged), received {average!r}.")
        self.average = average
        self.threshold = None if threshold is None else _threshold(threshold, "F1Score")
        super().__init__("f1_score" if name is None else name)

    def reset_state(self):
        self._n_tp = self._n_fp = self._n_fn = self._n_support = None

    def _update(self, y_true, y_pred, weights):
        if y_pred.ndim != 2:
            raise ValueError(f"F1Score: expected y_pred of shape (N, K), received {y_pred.shape}.")
        if self._n_tp is not None and self._n_tp.shape != (y_pred.shape[1],):
            raise ValueError(f"F1Score: earlier batches had {self._n_tp.shape[0]} classes, this one "
                             f"has {y_pred.shape[1]}.")
        if self.threshold is None:
            predicted = y_pred >= y_pred.max(axis=1, keepdims=True)
        else:
            predicted = y_pred > self.threshold
        counts = [np.sum(weights * mask, axis=0) for mask in
                  (predicted & y_true, predicted & ~y_true, ~predicted & y_true, y_true)]
        if self._n_tp is None:
            self._n_tp, self._n_fp, self._n_fn, self._n_support = counts
        else:
            self._n_tp, self._n_fp, self._n_fn, self._n_support = (
                old + new for old, new in zip((self._n_tp, self._n_fp, self._n_fn, self._n_support),
                                              counts))

    def _state(self):
        return {key: None if value is None else np.copy(value) for key, value in vars(self).items()
                if key.startswith("_n_")}

    def result(self):
        if self._n_tp is None:
            return 0.0
        tp, fp, fn = self._n_tp, self._n_fp, self._n_fn
        if self.average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        precision, recall = _divide(tp, tp + fp), _divide(tp, tp + fn)
        f1 = _divide(2 * precision * recall, precision + recall)
        if self.average == "weighted":
            total = self._n_support.sum()
            return float(np.sum(f1 * self._n_support) / total) if total > 0 else 0.0
        return float(np.mean(f1))

    def get_config(self):
        return {"average": self.average, "threshold": self.threshold, "name": self.name}


def _default_name(cls):
    return {"Precision": "precision", "Recall": "recall"}[cls.__name__]


CLASSES = (Precision, Recall, AUC, F1Score)

__all__ = ["StatefulMetric", "Precision", "Recall", "AUC", "F1Score"]
