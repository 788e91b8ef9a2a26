"""Loss functions: a batch-mean value and its gradient with respect to the predictions.

Every loss is an object with

* ``loss(y_true, y_pred) -> float``: the loss averaged over the batch,
* ``loss.gradient(y_true, y_pred) -> array``: the gradient of that average, shaped like ``y_pred``,
* ``loss.value_and_gradient(y_true, y_pred) -> (float, array)``: both at once,
* ``loss.per_sample(y_true, y_pred) -> array (N,)``: each sample's loss, whose mean is the loss
  (what ``fit(sample_weight=...)`` weighs).

The cross-entropy losses also offer ``value_and_gradient_from_logits(y_true, logits)``, the fused
softmax/sigmoid + cross-entropy computed with log-sum-exp. A network whose last layer is a softmax
(or sigmoid) should call it with the pre-activation logits: the gradient is the simple and exact
``(softmax(z) - y) / N`` and stays finite for any logits, unlike the chain
"probabilities -> clip -> log -> divide".

Gradients keep the dtype of ``y_pred`` (float32 in, float32 out).
"""

import numpy as np

from . import validation
from .catalog import Catalog, Configurable
from .mathutils import align_to, as_float_array, log_sigmoid, log_softmax, sigmoid, softmax

__all__ = [
    "EPSILON",
    "Loss",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "BinaryCrossentropy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "Huber",
    "KLDivergence",
    "Hinge",
    "SquaredHinge",
    "LogCosh",
    "Poisson",
    "CosineSimilarity",
    "CategoricalFocalCrossentropy",
    "CustomLoss",
    "custom",
    "get",
    "serialize",
    "softmax",
    "log_softmax",
    "sigmoid",
]

#: Probabilities are clipped to [EPSILON, 1 - EPSILON] before taking logs (non-logit path only).
EPSILON = 1e-7


class Loss(Configurable):
    """Base class: validates inputs, then delegates to ``_value_and_gradient``.

    Subclasses implement ``_prepare(y_true, y_pred)`` (validation and conversion, returning the two
    arrays actually used) and ``_value_and_gradient(y_true, y_pred)`` on those arrays.
    """

    #: Name used in logs and training history; Keras spelling.
    name = "loss"

    def __call__(self, y_true, y_pred):
        """Return the loss averaged over the batch, as a Python float."""
        return self.value_and_gradient(y_true, y_pred)[0]

    def gradient(self, y_true, y_pred):
        """Return d(mean loss)/d(y_pred), an array with the shape and dtype of ``y_pred``."""
        return self.value_and_gradient(y_true, y_pred)[1]

    def value_and_gradient(self, y_true, y_pred):
        """Return ``(mean loss as float, gradient shaped like y_pred)``."""
        y_true, y_pred = self._prepare(y_true, y_pred)
        value, grad = self._value_and_gradient(y_true, y_pred)
        return float(value), grad

    def per_sample(self, y_true, y_pred):
        """Return each sample's loss, shape (N,): the loss is their mean.

        This generic version evaluates the loss on one row at a time, which is right for any loss
        that is a mean over samples; the built-in losses override it with one vectorised pass.
        """
        y_true, y_pred = np.asarray(y_true), as_float_array(y_pred)
        _check_batch(y_true, y_pred, type(self).__name__)
        return np.array([self(y_true[n:n + 1], y_pred[n:n + 1]) for n in range(len(y_pred))])

    def _prepare(self, y_true, y_pred):
        raise NotImplementedError

    def _value_and_gradient(self, y_true, y_pred):
        raise NotImplementedError



# --------------------------------------------------------------------------------------------
# Input validation shared by the losses
# --------------------------------------------------------------------------------------------


def _check_batch(y_true, y_pred, loss_name):
    """Check that both arrays are at least 1-D, non-empty, and have the same batch size N."""
    if y_pred.ndim == 0 or y_pred.shape[0] == 0:
        raise ValueError(
            f"{loss_name}: y_pred must be a non-empty batch with shape (N, ...), "
            f"received shape {y_pred.shape}."
        )
    if y_true.ndim == 0 or y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(
            f"{loss_name}: y_true and y_pred must hold the same number of samples; "
            f"received y_true shape {y_true.shape} and y_pred shape {y_pred.shape}."
        )


def _match_shapes(y_true, y_pred, loss_name):
    """Return ``y_true`` in ``y_pred``'s dtype and shape, for elementwise losses (see ``align_to``)."""
    _check_batch(y_true, y_pred, loss_name)
    return np.asarray(align_to(y_true, y_pred, loss_name), dtype=y_pred.dtype)


def _class_ids_to_one_hot(ids, num_classes, dtype, loss_name):
    """Turn integer class ids, shape (N,), into a one-hot matrix, shape (N, K)."""
    if not (np.issubdtype(ids.dtype, np.integer) or ids.dtype == bool):
        if not np.all(np.floor(ids) == ids):
            raise ValueError(
                f"{loss_name}: 1-D y_true must hold integer class ids; received non-integer "
                f"values such as {ids[np.floor(ids) != ids][0]!r}."
            )
    ids = ids.astype(np.int64)
    bad = (ids < 0) | (ids >= num_classes)
    if np.any(bad):
        raise ValueError(
            f"{loss_name}: class ids must lie in [0, {num_classes}) to match y_pred's "
            f"{num_classes} classes; received {ids[bad][0]}."
        )
    one_hot = np.zeros((ids.shape[0], num_classes), dtype=dtype)
    one_hot[np.arange(ids.shape[0]), ids] = 1
    return one_hot


# --------------------------------------------------------------------------------------------
# Cross-entropy
# --------------------------------------------------------------------------------------------


class _CrossEntropy(Loss):
    """What the cross-entropies share: ``from_logits`` and ``label_smoothing`` in [0, 1]."""

    def __init__(self, from_logits=False, label_smoothing=0.0):
        owner = type(self).__name__
        label_smoothing = validation.probability(label_smoothing, "label_smoothing", owner,
                                                 allow_one=True)
        self.from_logits = validation.boolean(from_logits, "from_logits", owner)
        self.label_smoothing = label_smoothing

    def get_config(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class CategoricalCrossentropy(_CrossEntropy):
    """Cross-entropy between class targets and a predicted distribution over K classes.

    ``loss = -mean_n sum_k y[n, k] * log p[n, k]``

    Parameters
    ----------
    from_logits : bool
        If True, ``y_pred`` holds logits and the loss applies a softmax itself (fused, stable
        path). If False, ``y_pred`` holds probabilities, clipped to [EPSILON, 1 - EPSILON].
    label_smoothing : float in [0, 1]
        Targets become ``y * (1 - label_smoothing) + label_smoothing / K``.

    Shapes
    ------
    y_pred : (N, K)
    y_true : (N,) or (N, 1) integer class ids in [0, K), or (N, K) one-hot / probabilities.
    """

    name = "categorical_crossentropy"

    def _prepare(self, y_true, y_pred):
        """Validate and return (targets (N, K) in y_pred's dtype, y_pred (N, K))."""
        loss_name = type(self).__name__
        y_pred = as_float_array(y_pred)
        y_true = np.asarray(y_true)
        if y_pred.ndim != 2:
            raise ValueError(
                f"{loss_name}: expected y_pred with shape (N, K), received shape {y_pred.shape}."
            )
        _check_batch(y_true, y_pred, loss_name)
        n, k = y_pred.shape
        if y_true.shape == (n, k):
            targets = np.asarray(y_true, dtype=y_pred.dtype)
        elif y_true.ndim == 1 or y_true.shape == (n, 1):
            targets = _class_ids_to_one_hot(y_true.reshape(n), k, y_pred.dtype, loss_name)
        else:
            raise ValueError(
                f"{loss_name}: expected y_true as class ids with shape ({n},) or one-hot with "
                f"shape {(n, k)}, received shape {y_true.shape}."
            )
        if self.label_smoothing:
            targets = targets * (1 - self.label_smoothing) + self.label_smoothing / k
        return targets, y_pred

    def _value_and_gradient(self, targets, y_pred):
        if self.from_logits:
            return self._fused(targets, y_pred)
        n = y_pred.shape[0]
        eps = np.asarray(EPSILON, dtype=y_pred.dtype)
        probs = np.clip(y_pred, eps, 1 - eps)
        value = -np.sum(targets * np.log(probs)) / n
        # The clip is flat outside [eps, 1 - eps], so the gradient is zero there.
        inside = (y_pred >= eps) & (y_pred <= 1 - eps)
        grad = np.where(inside, -targets / (probs * n), 0).astype(y_pred.dtype, copy=False)
        return value, grad

    def value_and_gradient_from_logits(self, y_true, logits):
        """Fused softmax + cross-entropy, whatever ``from_logits`` says.

        Parameters
        ----------
        y_true : (N,) class ids or (N, K) targets
        logits : (N, K) pre-softmax scores

        Returns
        -------
        (float, array (N, K))
            Mean loss and its gradient with respect to the logits,
            ``(softmax(z) * sum_k y - y) / N``, i.e. ``(softmax(z) - y) / N`` for targets that
            sum to one.
        """
        targets, logits = self._prepare(y_true, logits)
        value, grad = self._fused(targets, logits)
        return float(value), grad

    def per_sample(self, y_true, y_pred):
        """Each sample's cross-entropy, shape (N,)."""
        targets, y_pred = self._prepare(y_true, y_pred)
        if self.from_logits:
            return -np.sum(targets * log_softmax(y_pred), axis=1)
        eps = np.asarray(EPSILON, dtype=y_pred.dtype)
        return -np.sum(targets * np.log(np.clip(y_pred, eps, 1 - eps)), axis=1)

    def per_sample_from_logits(self, y_true, logits):
        """Each sample's fused softmax cross-entropy from ``logits`` (N, K), shape (N,)."""
        targets, logits = self._prepare(y_true, logits)
        return -np.sum(targets * log_softmax(logits), axis=1)

    @staticmethod
    def _fused(targets, logits):
        n = logits.shape[0]
        log_probs = log_softmax(logits)
        value = -np.sum(targets * log_probs) / n
        target_mass = np.sum(targets, axis=1, keepdims=True)
        grad = (np.exp(log_probs) * target_mass - targets) / n
        return value, grad


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Same as :class:`CategoricalCrossentropy`; the Keras name for integer class-id targets.

    It accepts one-hot targets too, so the two classes are interchangeable.
    """

    name = "sparse_categorical_crossentropy"


class BinaryCrossentropy(_CrossEntropy):
    """Binary (or multi-label) cross-entropy, averaged over every output of every sample.

    ``loss = -mean(y * log p + (1 - y) * log(1 - p))``

    Parameters
    ----------
    from_logits : bool
        If True, ``y_pred`` holds logits and the loss applies a sigmoid itself (fused, stable path).
    label_smoothing : float in [0, 1]
        Targets become ``y * (1 - label_smoothing) + 0.5 * label_smoothing``.

    Shapes
    ------
    y_pred : (N,), (N, 1), (N, K) (K independent yes/no outputs) or any (N, ...), e.g. an
        (N, H, W, 1) segmentation mask: every element is one yes/no output, as in Keras
    y_true : same shape as y_pred (a missing or extra trailing axis of length 1 is accepted),
        values in [0, 1].
    """

    name = "binary_crossentropy"

    def _prepare(self, y_true, y_pred):
        y_pred = as_float_array(y_pred)
        y_true = np.asarray(y_true)
        targets = _match_shapes(y_true, y_pred, "BinaryCrossentropy")
        if np.any((targets < 0) | (targets > 1)):
            raise ValueError(
                "BinaryCrossentropy: expected y_true values in [0, 1], received values in "
                f"[{targets.min()}, {targets.max()}]. For class ids use CategoricalCrossentropy."
            )
        if self.label_smoothing:
            targets = targets * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        return targets, y_pred

    def _value_and_gradient(self, targets, y_pred):
        if self.from_logits:
            return self._fused(targets, y_pred)
        size = y_pred.size
        eps = np.asarray(EPSILON, dtype=y_pred.dtype)
        probs = np.clip(y_pred, eps, 1 - eps)
        value = -np.sum(targets * np.log(probs) + (1 - targets) * np.log(1 - probs)) / size
        # d/dp of -(y log p + (1 - y) log(1 - p)) is (p - y) / (p (1 - p)); zero where clipped.
        inside = (y_pred >= eps) & (y_pred <= 1 - eps)
        grad = np.where(inside, (probs - targets) / (probs * (1 - probs) * size), 0)
        return value, grad.astype(y_pred.dtype, copy=False)

    def value_and_gradient_from_logits(self, y_true, logits):
        """Fused sigmoid + binary cross-entropy, whatever ``from_logits`` says.

        Parameters
        ----------
        y_true : same shape as logits, values in [0, 1]
        logits : (N, ...) pre-sigmoid scores

        Returns
        -------
        (float, array shaped like logits)
            Mean loss over all ``logits.size`` outputs and its gradient ``(sigmoid(z) - y) / size``.
        """
        targets, logits = self._prepare(y_true, logits)
        value, grad = self._fused(targets, logits)
        return float(value), grad

    def per_sample(self, y_true, y_pred):
        """Each sample's binary cross-entropy averaged over its K outputs, shape (N,)."""
        if self.from_logits:
            return self.per_sample_from_logits(y_true, y_pred)
        targets, y_pred = self._prepare(y_true, y_pred)
        eps = np.asarray(EPSILON, dtype=y_pred.dtype)
        probs = np.clip(y_pred, eps, 1 - eps)
        values = -(targets * np.log(probs) + (1 - targets) * np.log(1 - probs))
        return values.reshape(len(values), -1).mean(axis=1)

    def per_sample_from_logits(self, y_true, logits):
        """Each sample's fused sigmoid cross-entropy averaged over its outputs, shape (N,)."""
        targets, logits = self._prepare(y_true, logits)
        values = -(log_sigmoid(logits) - (1 - targets) * logits)
        return values.reshape(len(values), -1).mean(axis=1)

    @staticmethod
    def _fused(targets, logits):
        size = logits.size
        # -(y log s(z) + (1 - y) log(1 - s(z))) with log(1 - s(z)) = log s(z) - z.
        value = -np.sum(log_sigmoid(logits) - (1 - targets) * logits) / size
        grad = (sigmoid(logits) - targets) / size
        return value, grad


# --------------------------------------------------------------------------------------------
# Regression losses: the mean over every element of y_pred
# --------------------------------------------------------------------------------------------


class _ElementwiseLoss(Loss):
    """Shared validation for losses that compare y_true and y_pred element by element."""

    def _prepare(self, y_true, y_pred):
        y_pred = as_float_array(y_pred)
        y_true = _match_shapes(np.asarray(y_true), y_pred, type(self).__name__)
        return y_true, y_pred

    def per_sample(self, y_true, y_pred):
        """Each sample's loss averaged over its elements, shape (N,)."""
        y_true, y_pred = self._prepare(y_true, y_pred)
        values = self._elementwise(y_pred - y_true)
        return values.reshape(len(values), -1).mean(axis=1)


class MeanSquaredError(_ElementwiseLoss):
    """``mean((y_pred - y_true) ** 2)`` over all elements; y_true and y_pred have the same shape."""

    name = "mean_squared_error"

    @staticmethod
    def _elementwise(diff):
        return diff * diff

    def _value_and_gradient(self, y_true, y_pred):
        diff = y_pred - y_true
        return np.mean(diff * diff), diff * (2 / diff.size)


class MeanAbsoluteError(_ElementwiseLoss):
    """``mean(|y_pred - y_true|)`` over all elements (gradient ``sign(diff) / size``, 0 at 0)."""

    name = "mean_absolute_error"

    @staticmethod
    def _elementwise(diff):
        return np.abs(diff)

    def _value_and_gradient(self, y_true, y_pred):
        diff = y_pred - y_true
        return np.mean(np.abs(diff)), np.sign(diff) / diff.size


class Huber(_ElementwiseLoss):
    """Huber loss, quadratic for small errors and linear for large ones, averaged over all elements.

    For ``e = y_pred - y_true``: ``0.5 * e**2`` if ``|e| <= delta`` else
    ``delta * (|e| - 0.5 * delta)``. Its gradient is ``clip(e, -delta, delta) / size``.
    """

    name = "huber"

    def __init__(self, delta=1.0):
        delta = validation.positive_number(delta, "delta", "Huber")
        self.delta = delta

    def get_config(self):
        return {"delta": self.delta}

    def _elementwise(self, diff):
        abs_diff = np.abs(diff)
        return np.where(abs_diff <= self.delta, 0.5 * diff * diff,
                        self.delta * (abs_diff - 0.5 * self.delta))

    def _value_and_gradient(self, y_true, y_pred):
        diff = y_pred - y_true
        value = np.mean(self._elementwise(diff))
        grad = np.clip(diff, -self.delta, self.delta) / diff.size
        return value, grad


# --------------------------------------------------------------------------------------------
# Keras's other losses: a per-sample loss over the last axis, averaged over the batch
# --------------------------------------------------------------------------------------------


def _last_axis_count(y_pred):
    """How many per-sample losses a loss reduced over the last axis yields (N for (N, K))."""
    return y_pred.size // y_pred.shape[-1] if y_pred.ndim > 1 else 1


class KLDivergence(_ElementwiseLoss):
    """Kullback-Leibler divergence, Keras's ``kl_divergence``.

    Both arrays are clipped to ``[EPSILON, 1]``, then
    ``loss = mean over samples of sum_k y[k] * log(y[k] / p[k])`` (the sum runs over the last axis).
    The gradient ``-y / p`` is zero where ``y_pred`` was clipped.

    Shapes: y_true and y_pred (N, K) (or (N,), one distribution over the batch axis, as Keras).
    """

    name = "kl_divergence"

    def _value_and_gradient(self, y_true, y_pred):
        eps = np.asarray(EPSILON, dtype=y_pred.dtype)
        one = np.asarray(1, dtype=y_pred.dtype)
        t = np.clip(y_true, eps, one)
        p = np.clip(y_pred, eps, one)
        count = _last_axis_count(y_pred)
        value = np.sum(t * np.log(t / p)) / count
        inside = (y_pred >= eps) & (y_pred <= 1)
        grad = np.where(inside, -t / (p * count), 0).astype(y_pred.dtype, copy=False)
        return value, grad


def _hinge_targets(y_true):
    """Keras converts 0/1 labels to -1/1 for the hinge losses; other targets are used as given."""
    if np.all((y_true == 0) | (y_true == 1)):
        return 2 * y_true - 1
    return y_true


class Hinge(_ElementwiseLoss):
    """``mean(max(1 - y * p, 0))``, Keras's ``hinge``; 0/1 targets become -1/1 first.

    Gradient ``-y / size`` where the margin ``1 - y * p`` is positive, 0 elsewhere (and at the kink).
    """

    name = "hinge"

    def _value_and_gradient(self, y_true, y_pred):
        y = _hinge_targets(y_true)
        margin = 1 - y * y_pred
        active = margin > 0
        value = np.mean(np.where(active, margin, 0))
        grad = np.where(active, -y / y_pred.size, 0).astype(y_pred.dtype, copy=False)
        return value, grad


class SquaredHinge(_ElementwiseLoss):
    """``mean(max(1 - y * p, 0) ** 2)``, Keras's ``squared_hinge``; 0/1 targets become -1/1 first."""

    name = "squared_hinge"

    def _value_and_gradient(self, y_true, y_pred):
        y = _hinge_targets(y_true)
        margin = np.maximum(1 - y * y_pred, 0)
        value = np.mean(margin * margin)
        grad = (-2 / y_pred.size) * y * margin
        return value, grad.astype(y_pred.dtype, copy=False)


class LogCosh(_ElementwiseLoss):
    """``mean(log(cosh(p - y)))``, Keras's ``log_cosh``; gradient ``tanh(p - y) / size``.

    Computed as ``x + softplus(-2x) - log 2``, which does not overflow for large ``|x|``.
    """

    name = "log_cosh"

    def _value_and_gradient(self, y_true, y_pred):
        x = y_pred - y_true
        value = np.mean(x + np.logaddexp(0, -2 * x) - np.log(2))
        return value, (np.tanh(x) / x.size).astype(y_pred.dtype, copy=False)


class Poisson(_ElementwiseLoss):
    """``mean(p - y * log(p + EPSILON))``, Keras's ``poisson`` (y_pred is a rate, >= 0).

    Gradient ``(1 - y / (p + EPSILON)) / size``.
    """

    name = "poisson"

    def _value_and_gradient(self, y_true, y_pred):
        shifted = y_pred + np.asarray(EPSILON, dtype=y_pred.dtype)
        value = np.mean(y_pred - y_true * np.log(shifted))
        grad = (1 - y_true / shifted) / y_pred.size
        return value, grad.astype(y_pred.dtype, copy=False)


class CosineSimilarity(_ElementwiseLoss):
    """``-mean over samples of cos(y, p)`` along the last axis, Keras's ``cosine_similarity``.

    Vectors are L2-normalised as Keras does, ``x / sqrt(max(sum(x**2), 1e-12))``, so the loss lies in
    [-1, 1] and is -1 when the prediction points where the target does.
    With ``u = y / |y|`` and ``n = |p|`` the gradient per sample is ``-(u - (u . p / n**2) p) / n``.
    """

    name = "cosine_similarity"

    _FLOOR = 1e-12  # Keras's l2_normalize floor on the squared norm

    def __init__(self, axis=-1):
        if axis not in (-1,):
            raise ValueError(
                f"CosineSimilarity: only axis=-1 (the last axis, Keras's default) is supported, "
                f"received axis={axis!r}."
            )
        self.axis = -1

    def get_config(self):
        return {"axis": self.axis}

    def _value_and_gradient(self, y_true, y_pred):
        count = _last_axis_count(y_pred)
        t_norm = np.sqrt(np.maximum(np.sum(y_true * y_true, axis=-1, keepdims=True), self._FLOOR))
        unit_true = y_true / t_norm
        squared = np.sum(y_pred * y_pred, axis=-1, keepdims=True)
        floored = squared <= self._FLOOR
        p_norm = np.sqrt(np.maximum(squared, self._FLOOR))
        dot = np.sum(unit_true * y_pred, axis=-1, keepdims=True)
        value = -np.sum(dot / p_norm) / count
        # Below the floor the norm is a constant, so only the numerator's derivative remains.
        projection = np.where(floored, 0, dot / (p_norm * p_norm))
        grad = -(unit_true - projection * y_pred) / (p_norm * count)
        return value, grad.astype(y_pred.dtype, copy=False)


class CategoricalFocalCrossentropy(CategoricalCrossentropy):
    """Focal loss (Lin et al. 2017) for K classes, Keras's ``categorical_focal_crossentropy``.

    ``loss = -mean_n sum_k alpha * (1 - q[n, k]) ** gamma * y[n, k] * log q[n, k]``

    where ``q`` is ``y_pred`` divided by its row sum and clipped to [EPSILON, 1 - EPSILON] (Keras),
    or ``softmax(logits)`` on the fused path (``from_logits=True``, or a softmax output layer), which
    uses log-softmax instead of clipping and gives the exact gradient with respect to the logits.
    ``gamma=0, alpha=1`` is the ordinary cross-entropy.

    Parameters
    ----------
    alpha : float >= 0
        Weighting factor (Keras default 0.25).
    gamma : float >= 0
        Focusing parameter (Keras default 2.0): down-weights well-classified samples.
    from_logits, label_smoothing
        As for :class:`CategoricalCrossentropy`.

    Shapes
    ------
    y_pred : (N, K); y_true : (N,) class ids or (N, K) one-hot / probabilities.
    """

    name = "categorical_focal_crossentropy"

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0):
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing)
        alpha = validation.non_negative_number(alpha, "alpha", "CategoricalFocalCrossentropy")
        gamma = validation.non_negative_number(gamma, "gamma", "CategoricalFocalCrossentropy")
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}

    def _focal_terms(self, targets, q, log_q):
        """Per-element loss ``w`` and ``h = q * dw/dq`` (both finite for q in (0, 1])."""
        rest = 1 - q
        modulating = rest**self.gamma
        loss = -self.alpha * targets * modulating * log_q
        # q * d/dq [(1-q)^g log q] = (1-q)^g - g q (1-q)^(g-1) log q; the second term -> 0 as q -> 1.
        safe_rest = np.where(rest > 0, rest, 1)
        second = np.where(rest > 0, self.gamma * q * safe_rest ** (self.gamma - 1) * log_q, 0)
        h = -self.alpha * targets * (modulating - second)
        return loss, h

    def _value_and_gradient(self, targets, y_pred):
        if self.from_logits:
            return self._fused(targets, y_pred)
        n = y_pred.shape[0]
        eps = np.asarray(EPSILON, dtype=y_pred.dtype)
        row_sum = np.sum(y_pred, axis=1, keepdims=True)
        normalised = y_pred / row_sum
        q = np.clip(normalised, eps, 1 - eps)
        loss, h = self._focal_terms(targets, q, np.log(q))
        # dw/dq, zero where clipped; then back through q = p / sum(p).
        dq = np.where((normalised >= eps) & (normalised <= 1 - eps), h / q, 0)
        grad = (dq - np.sum(dq * normalised, axis=1, keepdims=True)) / (row_sum * n)
        return np.sum(loss) / n, grad.astype(y_pred.dtype, copy=False)

    def _fused(self, targets, logits):
        n = logits.shape[0]
        log_q = log_softmax(logits)
        q = np.exp(log_q)
        loss, h = self._focal_terms(targets, q, log_q)
        # d/dz_j of sum_k w(q_k) with q = softmax(z): h_j - q_j * sum_k h_k.
        grad = (h - q * np.sum(h, axis=1, keepdims=True)) / n
        return np.sum(loss) / n, grad.astype(logits.dtype, copy=False)


# --------------------------------------------------------------------------------------------
# Your own loss: a function and its gradient
# --------------------------------------------------------------------------------------------


def _function_path(function, what):
    """``"module:qualname"`` of a module-level function, so a saved model or a worker finds it."""
    module, qualname = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or "<" in qualname:
        raise ValueError(
            f"CustomLoss: cannot serialise the {what} {function!r}: only functions defined at the top "
            f"level of a module can be saved or sent to worker processes (not lambdas or nested "
            f"functions)."
        )
    return f"{module}:{qualname}"


def _import_function(path, what):
    import importlib  # noqa: PLC0415 - needed only when a saved custom loss is loaded

    module, _, qualname = path.partition(":")
    try:
        target = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"CustomLoss: cannot import the {what} {path!r}: {err}") from None
    return target


class CustomLoss(Loss):
    """A loss from your own function ``fn(y_true, y_pred)`` and its exact gradient.

    There is no automatic differentiation (and no finite differences) here, so you supply the
    derivative yourself. Build one with :func:`custom`.

    Parameters
    ----------
    fn : callable
        ``fn(y_true, y_pred) -> array`` of per-sample losses (any shape, e.g. (N,)), like a Keras
        loss function; the reported loss is the mean of its elements.
    gradient : callable
        ``gradient(y_true, y_pred) -> array`` shaped like ``y_pred``: the derivative of the *sum* of
        ``fn``'s elements with respect to ``y_pred``. The library divides it by the element count.
    name : str, optional
        Name in logs and history (default: ``fn.__name__``).

    ``get_config`` stores the two functions as ``"module:qualname"``, so models compiled with a
    module-level function save, load and train with ``workers=`` (lambdas raise a ValueError there).
    """

    def __init__(self, fn, gradient, name=None):
        if isinstance(fn, str):
            fn = _import_function(fn, "loss function")
        if isinstance(gradient, str):
            gradient = _import_function(gradient, "gradient function")
        if not callable(fn) or not callable(gradient):
            raise ValueError(
                f"CustomLoss: fn and gradient must be callables (y_true, y_pred) -> array, received "
                f"{type(fn).__name__} and {type(gradient).__name__}."
            )
        self.fn = fn
        self.gradient_fn = gradient
        self.name = str(name) if name is not None else getattr(fn, "__name__", "custom_loss")

    def get_config(self):
        return {"fn": _function_path(self.fn, "loss function"),
                "gradient": _function_path(self.gradient_fn, "gradient function"),
                "name": self.name}

    def _prepare(self, y_true, y_pred):
        y_pred = as_float_array(y_pred)
        _check_batch(np.asarray(y_true), y_pred, self.name)
        return np.asarray(y_true), y_pred

    def _value_and_gradient(self, y_true, y_pred):
        values = np.asarray(self.fn(y_true, y_pred), dtype=np.float64)
        if values.size == 0:
            raise ValueError(f"{self.name}: the loss function returned no values.")
        grad = np.asarray(self.gradient_fn(y_true, y_pred))
        if grad.shape != y_pred.shape:
            raise ValueError(
                f"{self.name}: the gradient function must return an array shaped like y_pred "
                f"{y_pred.shape}, received shape {grad.shape}."
            )
        return values.mean(), (grad / values.size).astype(y_pred.dtype, copy=False)


def custom(fn, gradient, name=None):
    """Return a loss from ``fn(y_true, y_pred)`` (per-sample losses) and its gradient; see :class:`CustomLoss`.

    Example::

        def squared_log_error(y_true, y_pred):            # per sample: sum over the last axis
            return ((np.log1p(y_pred) - np.log1p(y_true)) ** 2).sum(axis=-1)

        def squared_log_error_gradient(y_true, y_pred):   # d(sum of all samples' losses)/d y_pred
            return 2 * (np.log1p(y_pred) - np.log1p(y_true)) / (1 + y_pred)

        model.compile(loss=losses.custom(squared_log_error, squared_log_error_gradient))
    """
    return CustomLoss(fn, gradient, name=name)


# --------------------------------------------------------------------------------------------
# Look-up by name / config
# --------------------------------------------------------------------------------------------

_CLASSES = {
    cls.__name__: cls
    for cls in (
        CategoricalCrossentropy,
        SparseCategoricalCrossentropy,
        BinaryCrossentropy,
        MeanSquaredError,
        MeanAbsoluteError,
        Huber,
        KLDivergence,
        Hinge,
        SquaredHinge,
        LogCosh,
        Poisson,
        CosineSimilarity,
        CategoricalFocalCrossentropy,
        CustomLoss,
    )
}

_ALIASES = {
    "cross_entropy": CategoricalCrossentropy,
    "crossentropy": CategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "l2": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "l1": MeanAbsoluteError,
    "huber": Huber,
    "huber_loss": Huber,
    "kl_divergence": KLDivergence,
    "kld": KLDivergence,
    "kullback_leibler_divergence": KLDivergence,
    "hinge": Hinge,
    "squared_hinge": SquaredHinge,
    "log_cosh": LogCosh,
    "logcosh": LogCosh,
    "poisson": Poisson,
    "cosine_similarity": CosineSimilarity,
    "categorical_focal_crossentropy": CategoricalFocalCrossentropy,
}
# Class names work too, in any case: "CategoricalCrossentropy", "meansquarederror", ...


_CATALOG = Catalog("loss", Loss, _CLASSES.values(), _ALIASES)


def get(identifier):
    """Return a loss object.

    Parameters
    ----------
    identifier : str, Loss, Loss subclass or dict
        A name such as ``"categorical_crossentropy"`` or ``"mse"`` (case-insensitive), an instance
        (returned unchanged), a class (instantiated with defaults), or a config dict
        ``{"class_name": ..., "config": {...}}`` as produced by :func:`serialize`.
    """
    if callable(identifier) and not isinstance(identifier, (Loss, type, str, dict)):
        raise ValueError(
            f"A plain function {getattr(identifier, '__name__', identifier)!r} cannot be used as a "
            f"loss here: without automatic differentiation its gradient is unknown. Wrap it with "
            f"modularcnn.losses.custom(fn, gradient) and supply the gradient function."
        )
    return _CATALOG.get(identifier)


def serialize(loss):
    """Return ``{"class_name": ..., "config": ...}`` for a loss; ``get`` turns it back into one."""
    return _CATALOG.serialize(loss)
