"""Normalisation layers: batch, layer and group normalisation."""

import math

import numpy as np

from .. import initializers, validation
from ..kernels.batch_norm import divide_count as _divide
from .base import Layer, inside_frozen, register_layer
from .batch_statistics import ONE_PROCESS


def _feature_axis(axis, input_shape, owner):
    """Keras's ``axis`` (an int counting the batch axis as 0, or one-element list) as an index into
    the per-batch shape ``(N, *input_shape)``; ValueError when it is the batch axis or out of range."""
    rank = len(input_shape) + 1
    if not -rank < axis < rank or axis % rank == 0:
        raise ValueError(f"{owner}: axis {axis} is not a feature axis of inputs of shape "
                         f"(N, {', '.join(map(str, input_shape))})")
    return axis % rank


def _axis_argument(axis, owner, allow_list):
    """Check ``axis``: an int, or (``allow_list``) a non-empty list of distinct ints."""
    if validation.is_integer(axis):
        return int(axis)
    if isinstance(axis, (list, tuple)) and len(axis) == 1 and validation.is_integer(axis[0]):
        return int(axis[0])  # Keras 2 writes the axis as a list of one
    if allow_list and isinstance(axis, (list, tuple)) and axis and all(
            validation.is_integer(a) for a in axis) and len(set(axis)) == len(axis):
        return [int(a) for a in axis]
    validation.fail(owner, "axis", "an int" + (" or a list of distinct ints" if allow_list else ""),
                    axis)


@register_layer
class BatchNormalization(Layer):
    """Normalise each feature with batch statistics in training, moving ones in inference.

    The feature axis is ``axis`` (Keras's argument, the batch axis being 0; default -1, the channels
    of ``(N, H, W, C)`` or the units of ``(N, F)``); statistics are taken over all the other axes,
    batch included. Parameters ``gamma`` (with ``scale=True``), ``beta`` (with ``center=True``),
    both trained, and ``moving_mean``, ``moving_variance`` (state) have shape ``(F,)``. Moving
    statistics follow Keras: ``moving = momentum * moving + (1 - momentum) * batch``, with the biased
    batch variance.

    In training every whole-batch quantity (the count, the sum of ``x``, the sum of squared deviations
    from the mean, and in the backward pass the sums of ``dy`` and ``dy * x_hat``) is a sum of
    per-row terms taken through ``batch_reducer`` (:mod:`modularcnn.layers.batch_statistics`): when a
    strategy splits the batch across processes, the statistics are still those of the whole batch
    (synchronised batch normalization), the same numbers as in one process up to float rounding.

    A frozen layer (``trainable=False``, given to the constructor or set later, e.g. to fine-tune)
    runs in inference mode during training too, as Keras 3 does: it normalises with the moving
    statistics, leaves them unchanged, and its backward pass is that of the affine map
    ``dx = dy * gamma / sqrt(moving_variance + epsilon)``; ``gamma`` and ``beta`` are not trained.
    The same holds inside a frozen network or block (``base.trainable = False`` on a nested ``Net``,
    a ``Residual`` or the trained network itself), as Keras's setter freezes every sublayer: that
    network's forward pass runs in :func:`~modularcnn.layers.base.frozen_scope`. The flags are part
    of the configs, so worker replicas and saved models freeze the same layers.
    """

    non_trainable_params = ("moving_mean", "moving_variance")
    samples_independent = False  # training normalises with statistics of the whole batch
    syncs_batch_statistics = True  # ... which it sums through batch_reducer
    batch_reducer = ONE_PROCESS

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.axis = _axis_argument(axis, "BatchNormalization", allow_list=False)
        self.momentum = validation.probability(momentum, "momentum", "BatchNormalization", allow_one=True)
        self.epsilon = validation.positive_number(epsilon, "epsilon", "BatchNormalization")
        self.center = validation.boolean(center, "center", "BatchNormalization")
        self.scale = validation.boolean(scale, "scale", "BatchNormalization")
        self.initializers = {
            "gamma": initializers.get(gamma_initializer),
            "beta": initializers.get(beta_initializer),
            "moving_mean": initializers.get(moving_mean_initializer),
            "moving_variance": initializers.get(moving_variance_initializer),
        }

    def compute_output_shape(self, input_shape):
        _feature_axis(self.axis, input_shape, self.describe())
        return tuple(input_shape)

    def build(self, input_shape):
        super().build(input_shape)
        axis = _feature_axis(self.axis, self.input_shape, self.describe())
        rank = len(self.input_shape) + 1
        # Reduce over every axis but the feature axis; (F,) arrays broadcast as (1, .., F, .., 1).
        self._axes = tuple(a for a in range(rank) if a != axis)
        self._broadcast = tuple(self.input_shape[axis - 1] if a == axis else 1 for a in range(rank))
        features = (self.input_shape[axis - 1],)
        for name, init in self.initializers.items():
            if (name == "gamma" and not self.scale) or (name == "beta" and not self.center):
                continue
            self.add_param(name, features, init)

    def _spread(self, value):
        return value.reshape(self._broadcast)

    def forward(self, x, training=False):
        self.check_input(x)
        axes = self._axes
        p = self.params
        training = self.uses_batch_statistics(training)
        if training:
            mean, variance = self._batch_statistics(x, axes)
            self.update_moving_statistics(mean, variance)
        else:
            mean, variance = p["moving_mean"], p["moving_variance"]
        inv_std = 1 / np.sqrt(variance + variance.dtype.type(self.epsilon))
        x_hat = (x - self._spread(mean)) * self._spread(inv_std)
        self._x_hat, self._inv_std, self._training = x_hat, inv_std, training
        y = x_hat * self._spread(p["gamma"]) if self.scale else x_hat
        return y + self._spread(p["beta"]) if self.center else y

    def uses_batch_statistics(self, training):
        """Whether a pass normalises with the batch's statistics: in training, unless this layer or
        a network or block around it is frozen (then as in inference)."""
        # Keras 3 (BatchNormalization.call): a frozen layer normalises as in inference, so that
        # fine-tuning neither moves the statistics the rest of the network was trained with nor
        # sees batch noise.
        return training and self.trainable and not inside_frozen()

    @property
    def features_last(self):
        """True when the features are the last axis (channels-last maps, dense units): the rows of
        ``x.reshape(-1, F)`` are then what the statistics are taken over."""
        return self._axes == tuple(range(len(self.input_shape)))

    def update_moving_statistics(self, mean, variance):
        """Move the moving statistics towards a training batch's ``mean`` and ``variance`` (F,)
        (only where this participant writes the shared state, see ``batch_reducer``)."""
        if not self.batch_reducer.updates_state:
            return
        p = self.params
        keep = p["moving_mean"].dtype.type(self.momentum)
        p["moving_mean"] *= keep
        p["moving_mean"] += (1 - keep) * mean
        p["moving_variance"] *= keep
        p["moving_variance"] += (1 - keep) * variance

    def store_gradients(self, dgamma, dbeta):
        """Keep this participant's ``gamma`` and ``beta`` gradients (F,) (those the layer has)."""
        if self.scale:
            self.grads["gamma"] = dgamma
        if self.center:
            self.grads["beta"] = dbeta

    def _batch_statistics(self, x, axes):
        """Mean and biased variance ``(F,)`` over the whole batch, in two passes as ``x.var`` takes
        them (the squared deviations from the mean, not the difference of two large sums, which
        loses the digits of a small variance). Each pass is one reduction over the participants."""
        reduce = self.batch_reducer.sum
        local_count = x.size // math.prod(self._broadcast)
        # float64 carries the count exactly; a float32 sum survives the round trip unchanged.
        totals = reduce(np.append(x.sum(axis=axes).astype(np.float64), local_count))
        self._count = count = int(totals[-1])
        mean = _divide(totals[:-1], count, x.dtype)
        centred = x - self._spread(mean)
        squares = reduce(np.multiply(centred, centred).sum(axis=axes))
        return mean, _divide(squares, count, x.dtype)

    def backward(self, dy):
        axes = self._axes
        gamma = self.params["gamma"] if self.scale else np.ones_like(self._inv_std)
        # This participant's sums: the strategy adds up every participant's parameter gradients.
        dbeta = dy.sum(axis=axes)
        dgamma = (dy * self._x_hat).sum(axis=axes)
        self.store_gradients(dgamma, dbeta)
        if not self._training:
            # Moving statistics are constants, so normalisation is an affine map.
            return dy * self._spread(gamma * self._inv_std)
        # Batch statistics depend on x: the usual three-term formula, per feature, with the sums over
        # the whole batch.
        features = dbeta.size
        totals = self.batch_reducer.sum(np.concatenate((dbeta, dgamma)))
        dbeta_all, dgamma_all = totals[:features], totals[features:]
        count = self._count
        return self._spread(gamma * self._inv_std / count) * (
            count * dy - self._spread(dbeta_all) - self._x_hat * self._spread(dgamma_all))

    def get_config(self):
        config = {
            **super().get_config(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            **{f"{name}_initializer": initializers.serialize(init)
               for name, init in self.initializers.items()},
        }
        # Keras's defaults are left out, so that configs written before these options stay equal.
        for key, default in (("axis", -1), ("center", True), ("scale", True)):
            if getattr(self, key) != default:
                config[key] = getattr(self, key)
        return config


def normalize(x, axes, epsilon):
    """``(x_hat, inv_std)``: ``x`` standardised over ``axes`` (biased variance, two passes), with
    ``inv_std = 1 / sqrt(var + epsilon)`` kept (keepdims) for the backward pass."""
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    variance = np.multiply(centred, centred).mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(variance + x.dtype.type(epsilon))
    return centred * inv_std, inv_std


def normalize_backward(dx_hat, x_hat, inv_std, axes):
    """``dL/dx`` of :func:`normalize` from ``dL/dx_hat``: the mean and the variance depend on ``x``."""
    return inv_std * (dx_hat - dx_hat.mean(axis=axes, keepdims=True)
                      - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True))


class _PerSampleNormalization(Layer):
    """What layer and group normalisation share: statistics of each sample on its own (the same in
    training and inference), then ``gamma * x_hat + beta`` with ``gamma``, ``beta`` broadcast."""

    def __init__(self, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", **kwargs):
        for option in ("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"):
            if kwargs.pop(option, None) is not None:
                raise ValueError(f"{type(self).__name__}: {option} is not supported (only None)")
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.epsilon = validation.positive_number(epsilon, "epsilon", owner)
        self.center = validation.boolean(center, "center", owner)
        self.scale = validation.boolean(scale, "scale", owner)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_initializer = initializers.get(beta_initializer)

    def add_affine(self, shape):
        if self.scale:
            self.add_param("gamma", shape, self.gamma_initializer)
        if self.center:
            self.add_param("beta", shape, self.beta_initializer)

    def affine(self, x_hat, broadcast):
        y = x_hat * self.params["gamma"].reshape(broadcast) if self.scale else x_hat
        return y + self.params["beta"].reshape(broadcast) if self.center else y

    def affine_backward(self, dy, x_hat, broadcast, param_axes):
        """Fill the gradients of gamma and beta (summed over ``param_axes``); returns ``dL/dx_hat``."""
        if self.center:
            self.grads["beta"] = dy.sum(axis=param_axes).reshape(self.params["beta"].shape)
        if not self.scale:
            return dy
        gamma = self.params["gamma"]
        self.grads["gamma"] = (dy * x_hat).sum(axis=param_axes).reshape(gamma.shape)
        return dy * gamma.reshape(broadcast)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer)}


@register_layer
class LayerNormalization(_PerSampleNormalization):
    """Normalise each sample over ``axis`` (Keras's ``LayerNormalization``; default -1, the features).

    ``axis`` is an int or a list of ints counting the batch axis as 0. Mean and biased variance are
    taken per sample over those axes; ``gamma`` and ``beta`` have the input's sizes on them (Keras:
    ``(input_shape[a] for a in axis)``, reshaped to broadcast). ``rms_scaling=True`` is refused.
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False, **kwargs):
        super().__init__(epsilon=epsilon, center=center, scale=scale, **kwargs)
        self.axis = _axis_argument(axis, "LayerNormalization", allow_list=True)
        if validation.boolean(rms_scaling, "rms_scaling", "LayerNormalization"):
            raise ValueError("LayerNormalization: rms_scaling=True is not supported (only False)")

    def _axes(self, input_shape):
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        resolved = [_feature_axis(a, input_shape, self.describe()) for a in axes]
        if len(set(resolved)) != len(resolved):
            raise ValueError(f"{self.describe()}: axis {self.axis} names an axis twice")
        return resolved

    def compute_output_shape(self, input_shape):
        self._axes(input_shape)
        return tuple(input_shape)

    def build(self, input_shape):
        super().build(input_shape)
        axes = self._axes(self.input_shape)
        full = (None, *self.input_shape)
        self._norm_axes = tuple(sorted(axes))
        self._param_axes = tuple(a for a in range(len(full)) if a not in axes)
        self._broadcast = tuple(n if a in axes else 1 for a, n in enumerate(full))
        self.add_affine(tuple(full[a] for a in axes))

    def forward(self, x, training=False):
        self.check_input(x)
        self._x_hat, self._inv_std = normalize(x, self._norm_axes, self.epsilon)
        return self.affine(self._x_hat, self._broadcast)

    def backward(self, dy):
        dx_hat = self.affine_backward(dy, self._x_hat, self._broadcast, self._param_axes)
        return normalize_backward(dx_hat, self._x_hat, self._inv_std, self._norm_axes)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


@register_layer
class GroupNormalization(_PerSampleNormalization):
    """Normalise each sample over groups of channels (Keras's ``GroupNormalization``).

    The ``C`` channels of ``(N, *S, C)`` are split into ``groups`` consecutive groups (``groups`` must
    divide ``C``); mean and biased variance are taken per sample and group over the spatial axes and
    the group's channels. ``gamma`` and ``beta`` have shape ``(C,)``. ``groups=C`` is instance
    normalisation, ``groups=1`` layer normalisation over a whole sample. Only the last axis
    (``axis=-1``, channels-last) is supported.
    """

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True, **kwargs):
        super().__init__(epsilon=epsilon, center=center, scale=scale, **kwargs)
        self.groups = validation.positive_int(groups, "groups", "GroupNormalization")
        self.axis = _axis_argument(axis, "GroupNormalization", allow_list=False)

    def compute_output_shape(self, input_shape):
        if _feature_axis(self.axis, input_shape, self.describe()) != len(input_shape):
            raise ValueError(f"{self.describe()}: only the last (channels) axis is supported, got "
                             f"axis={self.axis} for inputs of shape (N, {', '.join(map(str, input_shape))})")
        if input_shape[-1] % self.groups:
            raise ValueError(f"{self.describe()}: groups={self.groups} must divide the "
                             f"{input_shape[-1]} channels (input shape {tuple(input_shape)})")
        return tuple(input_shape)

    def build(self, input_shape):
        super().build(input_shape)
        self.add_affine((self.input_shape[-1],))

    def _grouped(self, a):
        """``(N, *S, C)`` viewed as ``(N, *S, groups, C / groups)``."""
        return a.reshape(*a.shape[:-1], self.groups, -1)

    def forward(self, x, training=False):
        self.check_input(x)
        grouped = self._grouped(x)
        # Every axis but the batch and the group axis (the second last).
        axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
        x_hat, self._inv_std = normalize(grouped, axes, self.epsilon)
        self._x_hat = x_hat.reshape(x.shape)
        return self.affine(self._x_hat, (self.input_shape[-1],))

    def backward(self, dy):
        dx_hat = self.affine_backward(dy, self._x_hat, (self.input_shape[-1],),
                                      tuple(range(dy.ndim - 1)))
        grouped = self._grouped(dx_hat)
        axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
        dx = normalize_backward(grouped, self._grouped(self._x_hat), self._inv_std, axes)
        return dx.reshape(dy.shape)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "axis": self.axis}
