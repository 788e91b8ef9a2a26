"""Keras's namespace over modularcnn, so that a Keras script runs after changing its import lines.

::

    from modularcnn import keras          # was: import keras
    from modularcnn.keras import layers   # was: from keras import layers

    model = keras.Sequential([keras.Input(shape=(28, 28, 1)),
                              layers.Conv2D(32, kernel_size=(3, 3), activation="relu"), ...])
    y = keras.utils.to_categorical(labels, 10)

Every name here is modularcnn's own object (no copies, no wrappers): ``keras.Sequential`` is
:class:`modularcnn.Net`, ``keras.layers`` is :mod:`modularcnn.layers`, and so on. What differs from
Keras is listed in the README's "Coming from Keras" table (``tests/test_parity.py`` checks it).
"""

from . import (activations, callbacks, constraints, datasets, initializers, layers, losses, metrics,
               models, optimizers, regularizers, utils)
from .functional import Model
from .layers.input_layer import Input
from .net import Sequential
from .saving import load_model

__all__ = ["activations", "callbacks", "constraints", "datasets", "initializers", "layers", "losses",
           "metrics", "models", "optimizers", "regularizers", "utils", "Model", "Input", "Sequential",
           "load_model"]
