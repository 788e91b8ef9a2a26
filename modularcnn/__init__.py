"""modularcnn: Keras-style convolutional networks in plain, vectorised, readable NumPy.

>>> from modularcnn import Net
>>> from modularcnn.layers import Convolutional, MaxPooling, Flatten, Dense
"""

from . import activations, constraints, initializers, layers, regularizers, utils, validation
from .errors import ArgumentError, DataError, ModelFileError, NonFiniteLossError, ShapeError
from .execution import ExecutionOptions, reference_kernels
from .gradcheck import GradientCheckError, gradcheck
from .layers.input_layer import Input
from .layers.symbolic import SymbolicTensor
from .net import Net, Sequential
from .functional import Model
from .saving import load_model
from .plotting import plot_confusion_matrix, plot_history, plot_predictions  # matplotlib lazily
from .version import __version__

__all__ = [
    "Net", "Sequential", "Model", "Input", "SymbolicTensor", "ExecutionOptions", "reference_kernels",
    "layers", "activations", "initializers", "regularizers", "constraints", "gradcheck",
    "GradientCheckError", "ArgumentError", "ModelFileError", "ShapeError", "DataError",
    "NonFiniteLossError", "validation",
    "utils", "load_model", "__version__",
    "plot_history", "plot_predictions", "plot_confusion_matrix",
]
