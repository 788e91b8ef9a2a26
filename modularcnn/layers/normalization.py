"""Batch normalisation."""

import numpy as np

from .. import initializers, validation
from .base import Layer, register_layer


@register_layer
class BatchNormalization(Layer):
    """Normalise each feature (the last axis) with batch statistics in training, moving ones in inference.

    Works after dense layers ``(N, F)`` and convolutions ``(N, H, W, C)``; statistics are taken over all
    axes but the last. Parameters ``gamma``, ``beta`` (trained) and ``moving_mean``, ``moving_variance``
    (state) all have shape ``(F,)``. Moving statistics follow Keras:
    ``moving = momentum * moving + (1 - momentum) * batch``, with the biased batch variance.
    """

    non_trainable_params = ("moving_mean", "moving_variance")
    samples_independent = False  # training normalises with statistics of the whole batch

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
            mean = x.mean(axis=axes)
            variance = x.var(axis=axes)
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

    def backward(self, dy):
        axes = tuple(range(dy.ndim - 1))
        gamma = self.params["gamma"]
        dbeta = dy.sum(axis=axes)
        dgamma = (dy * self._x_hat).sum(axis=axes)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        if not self._training:
            # Moving statistics are constants, so normalisation is an affine map.
            return dy * (gamma * self._inv_std)
        # Batch statistics depend on x: the usual three-term formula, per feature.
        count = dy.size // dy.shape[-1]
        return (gamma * self._inv_std / count) * (count * dy - dbeta - self._x_hat * dgamma)

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            **{f"{name}_initializer": initializers.serialize(init)
               for name, init in self.initializers.items()},
        }
