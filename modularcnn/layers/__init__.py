"""Layers: ``from modularcnn.layers import Convolutional, MaxPooling, Flatten, Dense, ...``.

Every layer follows the protocol in :mod:`modularcnn.layers.base`; Keras's names are aliases of ours.
"""

from .activation import ELU, LeakyReLU, PReLU, ReLU, Softmax
from .base import ActivatedLayer, Layer, get_layer_class, register_layer, registered_layers
from .convolutional import Conv1D, Conv2D, Conv3D, Convolutional
from .core import Activation, Dropout, Flatten, Rescaling, Reshape
from .dense import Dense
from .depthwise import DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D
from .input_layer import Input, InputLayer
from .merge import Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract
from .nested import NestedModel
from .noise import GaussianDropout, GaussianNoise, SpatialDropout1D, SpatialDropout2D, SpatialDropout3D
from .normalization import BatchNormalization, GroupNormalization, LayerNormalization
from .pooling import (
    AveragePooling,
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    AvgPool1D,
    AvgPool2D,
    AvgPool3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalAvgPool3D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    GlobalMaxPool3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    MaxPool1D,
    MaxPool2D,
    MaxPool3D,
    MaxPooling,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
)
from .reshaping import (Cropping1D, Cropping2D, Cropping3D, Permute, ZeroPadding1D, ZeroPadding2D,
                        ZeroPadding3D)
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
    "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "Permute", "Rescaling", "LayerNormalization", "GroupNormalization",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
    "GlobalAveragePooling1D", "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling3D",
    "AvgPool1D", "AvgPool2D", "AvgPool3D", "MaxPool1D", "MaxPool3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
    "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
]
