"""Batch normalisation."""

import numpy as np

from .. import initializers, validation
from .base import Layer, register_layer
from .batch_statistics import ONE_PROCESS


def _divide(total, count, dtype):
    """``total / count`` in ``dtype``, rounded as NumPy's ``mean`` and ``var`` round it."""
    return np.true_divide(total, np.intp(count), out=np.empty(total.shape, dtype), casting="unsafe")


@register_layer
class BatchNormalization(Layer):
    """Normalise each feature (the last axis) with batch statistics in training, moving ones in inference.

    Works after dense layers ``(N, F)`` and convolutions ``(N, H, W, C)``; statistics are taken over all
    axes but the last. Parameters ``gamma``, ``beta`` (trained) and ``moving_mean``, ``moving_variance``
    (state) all have shape ``(F,)``. Moving statistics follow Keras:
    ``moving = momentum * moving + (1 - momentum) * batch``, with the biased batch variance.

    In training every whole-batch quantity (the count, the sum of ``x``, the sum of squared deviations
    from the mean, and in the backward pass the sums of ``dy`` and ``dy * x_hat``) is a sum of
    per-row terms taken through ``batch_reducer`` (:mod:`modularcnn.layers.batch_statistics`): when a
    strategy splits the batch across processes, the statistics are still those of the whole batch
    (synchronised batch normalization), the same numbers as in one process up to float rounding.
    """

    non_trainable_params = ("moving_mean", "moving_variance")
    samples_independent = False  # training normalises with statistics of the whole batch
    syncs_batch_statistics = True  # ... which it sums through batch_reducer
    batch_reducer = ONE_PROCESS

    def __init__(self, momentum=0.99, epsilon=1e-3, beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.momentum = validation.probability(momentum, "momentum", "BatchNormalization", allow_one=True)
        self.epsilon = validation.positive_number(epsilon, "epsilon", "BatchNormalization")
        self.initializers = {
            "gamma": initializers.get(gamma_initializer),
            "beta": initializers.get(beta_initializer),
            "moving_mean": initializers.get(moving_mean_initializer),
            "moving_variance": initializers.get(moving_variance_initializer),
        }

    def build(self, input_shape):
        super().build(input_shape)
        features = (self.input_shape[-1],)
        for name, init in self.initializers.items():
            self.add_param(name, features, init)

    def forward(self, x, training=False):
        self.check_input(x)
        axes = tuple(range(x.ndim - 1))
        p = self.params
        if training:
            mean, variance = self._batch_statistics(x, axes)
            if self.batch_reducer.updates_state:
                keep = p["moving_mean"].dtype.type(self.momentum)
                p["moving_mean"] *= keep
                p["moving_mean"] += (1 - keep) * mean
                p["moving_variance"] *= keep
                p["moving_variance"] += (1 - keep) * variance
        else:
            mean, variance = p["moving_mean"], p["moving_variance"]
        inv_std = 1 / np.sqrt(variance + variance.dtype.type(self.epsilon))
        x_hat = (x - mean) * inv_std
        self._x_hat, self._inv_std, self._training = x_hat, inv_std, training
        return x_hat * p["gamma"] + p["beta"]

    def _batch_statistics(self, x, axes):
        """Mean and biased variance ``(F,)`` over the whole batch, in two passes as ``x.var`` takes
        them (the squared deviations from the mean, not the difference of two large sums, which
        loses the digits of a small variance). Each pass is one reduction over the participants."""
        reduce = self.batch_reducer.sum
        local_count = x.size // x.shape[-1]
        # float64 carries the count exactly; a float32 sum survives the round trip unchanged.
        totals = reduce(np.append(x.sum(axis=axes).astype(np.float64), local_count))
        self._count = count = int(totals[-1])
        mean = _divide(totals[:-1], count, x.dtype)
        centred = x - mean
        squares = reduce(np.multiply(centred, centred).sum(axis=axes))
        return mean, _divide(squares, count, x.dtype)

    def backward(self, dy):
        axes = tuple(range(dy.ndim - 1))
        gamma = self.params["gamma"]
        # This participant's sums: the strategy adds up every participant's parameter gradients.
        dbeta = dy.sum(axis=axes)
        dgamma = (dy * self._x_hat).sum(axis=axes)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        if not self._training:
            # Moving statistics are constants, so normalisation is an affine map.
            return dy * (gamma * self._inv_std)
        # Batch statistics depend on x: the usual three-term formula, per feature, with the sums over
        # the whole batch.
        features = dbeta.size
        totals = self.batch_reducer.sum(np.concatenate((dbeta, dgamma)))
        dbeta_all, dgamma_all = totals[:features], totals[features:]
        count = self._count
        return (gamma * self._inv_std / count) * (count * dy - dbeta_all - self._x_hat * dgamma_all)

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            **{f"{name}_initializer": initializers.serialize(init)
               for name, init in self.initializers.items()},
        }
