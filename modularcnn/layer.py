"""The seed library's ``layer`` module: its five layers with the seed's own signatures.

A script written for the seed (``from lib import layer, network``) runs after changing only its import
line to ``from modularcnn import layer, network``. Each class here is the modularcnn layer of the same
name (:mod:`modularcnn.layers`, the documented, Keras-style API), taking its arguments in the seed's
order and with the seed's defaults; models built from them save, load and train like any other.
"""

from . import layers

__all__ = ["Convolutional", "MaxPooling", "Activation", "Flatten", "Dense"]

# The seed's leaky ReLU slope; its other activations took no parameter.
_SEED_ALPHA = 0.001
_SEED_ALPHA_FUNCTIONS = ("leakyrelu", "leaky_relu")


class _SeedSignature:
    """Mixin: loading or cloning a seed-signature layer gives the modularcnn layer it stands for."""

    @classmethod
    def from_config(cls, config):
        # Configs hold the modularcnn layer's keyword arguments, which that layer takes.
        return layers.get_layer_class(cls.__name__).from_config(config)


class Convolutional(_SeedSignature, layers.Convolutional):
    """``Convolutional(input_shape=None, filters=1, filter_size=3, stride=1, pad=0, pad_value=0)``."""

    def __init__(self, input_shape=None, filters=1, filter_size=3, stride=1, pad=0, pad_value=0,
                 **kwargs):
        super().__init__(filters, filter_size=filter_size, stride=stride, pad=pad,
                         pad_value=pad_value, input_shape=input_shape, **kwargs)


class MaxPooling(_SeedSignature, layers.MaxPooling):
    """``MaxPooling(input_shape=None, pool_size=2)``: non-overlapping windows (stride = pool_size)."""

    def __init__(self, input_shape=None, pool_size=2, **kwargs):
        super().__init__(pool_size, input_shape=input_shape, **kwargs)


class Activation(_SeedSignature, layers.Activation):
    """``Activation(function='relu', alpha=0.001)``; ``alpha`` is the leaky ReLU's slope."""

    def __init__(self, function="relu", alpha=_SEED_ALPHA, **kwargs):
        takes_alpha = isinstance(function, str) and function.lower() in _SEED_ALPHA_FUNCTIONS
        super().__init__(function, alpha=alpha if takes_alpha else None, **kwargs)


class Flatten(_SeedSignature, layers.Flatten):
    """``Flatten(input_shape)``; the shape may be left out, as it is inferred from the layer before."""

    def __init__(self, input_shape=None, **kwargs):
        super().__init__(input_shape=input_shape, **kwargs)


class Dense(_SeedSignature, layers.Dense):
    """``Dense(units_in, units_out, initial_Wvar=0.01)``: kernel drawn from N(0, initial_Wvar)."""

    def __init__(self, units_in, units_out, initial_Wvar=0.01, **kwargs):  # noqa: N803 - seed name
        super().__init__(units_out, units_in=units_in, initial_Wvar=initial_Wvar, **kwargs)
