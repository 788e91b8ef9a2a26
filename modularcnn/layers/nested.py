"""A whole network used as one layer: a ``Net`` inside a ``Model``, a ``Model`` inside a ``Net``.

As in Keras, calling a network on symbolic tensors (``encoder(x)``) or adding it to a ``Net``
(``net.add(block)``) makes it one layer of the outer network: :class:`NestedModel` wraps it, runs its
forward and backward passes, and shows its arrays as ``"<inner layer>/<name>"`` (``"conv2d/kernel"``),
live views over the inner layers' dictionaries as :class:`~modularcnn.layers.Residual` does, so the
optimiser, ``get_weights`` and saving reach the inner arrays themselves. The inner network's layers
are listed under it by ``summary()``.

The wrapper is made once per network (:func:`as_layer`), so a network called twice is one shared
layer; since it holds layers, a graph refuses to call it twice (see :mod:`modularcnn.graph`). A
network with several outputs cannot be a layer (a layer makes one tensor).
"""

import numpy as np

from .base import Layer, all_layers, frozen_scope, register_layer
from .stack import NamedArrays


#: The network classes by name (``"Net"``, ``"Model"``), registered by their modules: layers stay
#: below the networks (tests/test_dependencies.py), so this module never imports them.
NETWORKS = {}


def register_network(cls):
    """Make ``cls`` (Net, Model) usable here by its class name; returns it (a class decorator)."""
    NETWORKS[cls.__name__] = cls
    return cls


def as_layer(network):
    """The :class:`NestedModel` of ``network`` (a Net or Model), made on first use."""
    wrapper = getattr(network, "_as_layer", None)
    if wrapper is None:
        wrapper = NestedModel(network)
        network._as_layer = wrapper
    return wrapper


def _network_shapes(network):
    shapes = getattr(network, "input_shapes", None)
    return list(shapes) if shapes is not None else [network.input_shape]


@register_layer
class NestedModel(Layer):
    """A ``Net`` or ``Model`` as a layer (see the module docstring).

    Parameters
    ----------
    model : Net or Model
        Built (its input shape known), with one output. Its dtype must be the outer network's.
    name : str, optional
        Defaults to the network's name.
    """

    def __init__(self, model, name=None, trainable=True, input_shape=None):
        if not isinstance(model, tuple(NETWORKS.values())):
            raise ValueError(f"NestedModel: model must be a Net or Model, got {type(model).__name__}")
        if model.input_shape is None or not model.layers:
            raise ValueError(f"NestedModel: the network {model.name!r} has no layers or no input shape "
                             "yet, so it cannot be used as a layer")
        if isinstance(model.output_shape, list):
            raise ValueError(f"NestedModel: the model {model.name!r} has several outputs; a layer makes "
                             "one tensor, so it cannot be used as a layer")
        self.model = model
        super().__init__(name=name or model.name, trainable=trainable, input_shape=input_shape)
        # An instance attribute: a network with several inputs is called on a list of tensors.
        self.multiple_inputs = len(_network_shapes(model)) > 1
        self.dtype = model.dtype

    # -- the inner layers ------------------------------------------------------------------------

    @property
    def sublayers(self):
        return list(self.model.layers)

    @property
    def params(self):
        return NamedArrays(lambda: self.sublayers, "params")

    @params.setter
    def params(self, value):
        merged = self.params
        for key, array in dict(value).items():
            merged[key] = array

    @property
    def grads(self):
        return NamedArrays(lambda: self.sublayers, "grads")

    @grads.setter
    def grads(self, value):
        for layer in self.sublayers:
            layer.grads = {}
        merged = self.grads
        for key, array in dict(value).items():
            merged[key] = array

    @property
    def non_trainable_params(self):
        return tuple(f"{layer.name}/{key}"
                     for layer in self.sublayers for key in layer.non_trainable_params)

    @property
    def trainable_params(self):
        if not (self.trainable and self.model.trainable):
            return {}
        return {f"{layer.name}/{key}": value
                for layer in self.sublayers for key, value in layer.trainable_params.items()}

    @property
    def samples_independent(self):
        return all(layer.samples_independent for layer in all_layers(self.sublayers))

    # -- lifecycle -------------------------------------------------------------------------------

    def compute_output_shape(self, input_shape):
        return tuple(self.model.output_shape)

    def build(self, input_shape):
        expected = _network_shapes(self.model)
        given = [tuple(s) for s in input_shape] if self.multiple_inputs else [tuple(input_shape)]
        if given != [tuple(s) for s in expected]:
            shown = expected if self.multiple_inputs else expected[0]
            raise ValueError(f"{self.describe()}: the network takes inputs of shape {shown}, got "
                             f"{input_shape}")
        if np.dtype(self.dtype) != self.model.dtype:
            raise ValueError(f"{self.describe()}: the network computes in {self.model.dtype.name}, but "
                             f"its input is {np.dtype(self.dtype).name}")
        self.dtype = self.model.dtype
        self.input_shape = given if self.multiple_inputs else given[0]
        self.output_shape = tuple(self.model.output_shape)
        self.built = True

    def forward(self, x, training=False):
        with frozen_scope(not self.trainable):  # the wrapper's flag freezes the network too
            return self.model.forward(x, training=training)

    def backward(self, dy):
        return self.model.backward(dy, input_gradient=self.input_grad_needed)

    # -- config ----------------------------------------------------------------------------------

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "model": {"class_name": type(self.model).__name__, "config": self.model.get_config()}}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = config.pop("model", None)
        if not isinstance(inner, dict) or inner.get("class_name") not in NETWORKS or not \
                isinstance(inner.get("config"), dict):
            raise ValueError(f"NestedModel: 'model' should be {{'class_name': one of {sorted(NETWORKS)}, "
                             f"'config': {{...}}}}, found {str(inner)[:80]}")
        network_class = NETWORKS[inner["class_name"]]
        network = network_class.from_config(inner["config"], custom_objects=custom_objects)
        wrapper = cls(network, **config)
        network._as_layer = wrapper
        return wrapper

    def __repr__(self):
        return f"<NestedModel name={self.name!r} model={self.model!r}>"

