"""The fully connected layer."""

import math

import numpy as np

from .. import initializers, validation
from .base import ActivatedLayer, register_layer


@register_layer
class Dense(ActivatedLayer):
    """``y = activation(x @ kernel + bias)`` over the last axis.

    Input ``(N, ..., units_in)``, kernel ``(units_in, units)``, bias ``(units,)``, output
    ``(N, ..., units)``; usually the input is ``(N, units_in)`` after a :class:`Flatten`.

    Both spellings work: ``Dense(128)`` (Keras: the input size is inferred) and the seed's
    ``Dense(units_in, units_out)`` or ``Dense(units_in=512, units_out=10)``, whose stated
    ``units_in`` is checked against the inferred size. ``Dense(64, "relu")`` is read as Keras reads
    it (units, activation). ``kernel_regularizer``, ``bias_regularizer``, ``activity_regularizer``
    (:mod:`modularcnn.regularizers`), ``kernel_constraint`` and ``bias_constraint``
    (:mod:`modularcnn.constraints`) as in Keras. The seed's ``initial_Wvar=v`` draws the kernel from a normal
    distribution of variance ``v``, i.e. ``kernel_initializer=RandomNormal(stddev=sqrt(v))``.
    """

    weight_options = {"kernel": "kernel", "bias": "bias"}

    def __init__(self, units=None, units_out=None, activation=None, use_bias=True,
                 kernel_initializer=None, bias_initializer="zeros", input_shape=None,
                 name=None, trainable=True, units_in=None, alpha=None, initial_Wvar=None,
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None):
        if isinstance(units_out, str) and activation is None:
            activation, units_out = units_out, None
        super().__init__(activation=activation, alpha=alpha, input_shape=input_shape, name=name,
                         trainable=trainable, activity_regularizer=activity_regularizer)
        self.set_weight_options({"kernel_regularizer": kernel_regularizer,
                                 "bias_regularizer": bias_regularizer,
                                 "kernel_constraint": kernel_constraint,
                                 "bias_constraint": bias_constraint})
        if units_out is not None and units is not None:
            if units_in is not None and units_in != units:
                raise ValueError(f"Dense: units_in={units_in!r} disagrees with the first argument {units!r}")
            units_in, units = units, units_out
        elif units_out is not None:
            units = units_out
        self.units = validation.positive_int(units, "units", "Dense")
        self.units_in = validation.positive_int(units_in, "units_in", "Dense", allow_none=True)
        self.use_bias = validation.boolean(use_bias, "use_bias", "Dense")
        self.kernel_initializer = initializers.get(
            self._seed_initializer(initial_Wvar, kernel_initializer) or "glorot_uniform")
        self.bias_initializer = initializers.get(bias_initializer)

    @staticmethod
    def _seed_initializer(initial_wvar, kernel_initializer):
        """``kernel_initializer``, or the normal distribution of variance ``initial_Wvar`` it replaces."""
        if initial_wvar is None:
            return kernel_initializer
        if kernel_initializer is not None:
            raise ValueError("Dense: give initial_Wvar or kernel_initializer, not both")
        initial_wvar = validation.positive_number(initial_wvar, "initial_Wvar", "Dense")
        return initializers.RandomNormal(stddev=math.sqrt(initial_wvar))

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.describe()}: needs at least one input axis, got {input_shape}")
        if self.units_in is not None and input_shape[-1] != self.units_in:
            raise ValueError(
                f"{self.describe()}: stated units_in={self.units_in} but the previous layer gives "
                f"{input_shape[-1]} (input shape {tuple(input_shape)})"
                + ("; add a Flatten layer first" if len(input_shape) > 1 else "")
            )
        return tuple(input_shape[:-1]) + (self.units,)

    def build(self, input_shape):
        super().build(input_shape)
        self.add_param("kernel", (self.input_shape[-1], self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_param("bias", (self.units,), self.bias_initializer)

    def forward(self, x, training=False):
        self.check_input(x)
        self._x = x
        z = x @ self.params["kernel"]
        if self.use_bias:
            z += self.params["bias"]
        return self.activate(z)

    def backward_preactivation(self, dz):
        """Backward from ``dL/dz``, the gradient before the activation (used by fused losses)."""
        x2 = self._x.reshape(-1, self._x.shape[-1])
        dz2 = dz.reshape(-1, dz.shape[-1])
        self.grads["kernel"] = x2.T @ dz2
        if self.use_bias:
            self.grads["bias"] = np.ones(len(dz2), dtype=dz2.dtype) @ dz2
        if not self.input_grad_needed:
            return None
        return dz @ self.params["kernel"].T

    def get_config(self):
        config = {
            **super().get_config(),
            "units": self.units,
            "units_in": self.units_in,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
        }
        return config
