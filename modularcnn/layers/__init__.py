"""Layers: ``from modularcnn.layers import Convolutional, MaxPooling, Flatten, Dense, ...``.

Every layer follows the protocol in :mod:`modularcnn.layers.base`; Keras's names are aliases of ours.
"""

from .activation import ELU, LeakyReLU, PReLU, ReLU, Softmax
from .base import ActivatedLayer, Layer, get_layer_class, register_layer, registered_layers
from .convolutional import Conv1D, Conv2D, Conv3D, Convolutional
from .core import Activation, Dropout, Flatten, Reshape
from .dense import Dense
from .input_layer import Input, InputLayer
from .merge import Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract
from .nested import NestedModel
from .normalization import BatchNormalization
from .pooling import (
    AveragePooling,
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPool2D,
    MaxPooling,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
)
from .residual import Residual
from .transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from .upsampling import UpSampling1D, UpSampling2D, UpSampling3D

__all__ = [
    "Layer", "ActivatedLayer", "register_layer", "get_layer_class", "registered_layers",
    "Convolutional", "Conv1D", "Conv2D", "Conv3D",
    "MaxPooling", "MaxPooling1D", "MaxPooling2D", "MaxPool2D", "MaxPooling3D",
    "AveragePooling", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "Input", "InputLayer", "Dense", "Flatten", "Reshape", "Activation", "Dropout", "BatchNormalization",
    "Residual", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    "NestedModel",
]
