"""Every layer's backward pass against centred finite differences in float64 (relative error < 1e-6).

Cases are chosen to be awkward: non-square inputs and kernels, strides 2 and 3, int / "same" / "valid" /
asymmetric padding, overlapping pools, batch size 1, and every activation.
"""

import numpy as np
import pytest

from modularcnn import GradientCheckError, Net, gradcheck
from modularcnn.layers import (
    Activation,
    AveragePooling,
    AveragePooling1D,
    AveragePooling3D,
    BatchNormalization,
    Conv1D,
    Conv3D,
    Convolutional,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Layer,
    MaxPooling,
    MaxPooling1D,
    MaxPooling3D,
    Reshape,
)

TOL = 1e-6

LAYER_CASES = [
    ("conv 3x3 pad1", lambda: Convolutional(4, 3, 1, 1), (7, 5, 3), 2),
    ("conv stride2 valid nonsquare kernel", lambda: Convolutional(3, (3, 2), 2, "valid"), (9, 6, 2), 2),
    ("conv stride3 int pad batch1", lambda: Convolutional(2, 3, 3, 2), (8, 7, 2), 1),
    ("conv same stride2 odd", lambda: Convolutional(3, 4, 2, "same"), (7, 9, 2), 2),
    ("conv asymmetric explicit pads", lambda: Convolutional(2, 3, (2, 1), ((0, 2), (1, 0))), (6, 5, 1), 2),
    ("conv no bias relu", lambda: Convolutional(3, 3, activation="relu", use_bias=False), (6, 6, 2), 2),
    ("conv tanh", lambda: Convolutional(2, 2, activation="tanh"), (5, 4, 1), 1),
    ("conv1d stride2 same", lambda: Conv1D(3, 4, 2, "same"), (11, 2), 2),
    ("conv3d noncubic stride2", lambda: Conv3D(2, (3, 2, 2), (2, 1, 2), 1), (5, 4, 6, 2), 1),
    ("maxpool 2x2", lambda: MaxPooling(2), (6, 8, 3), 2),
    ("maxpool overlap 3/2", lambda: MaxPooling(3, 2), (7, 9, 2), 2),
    ("maxpool nonsquare same batch1", lambda: MaxPooling((3, 2), (1, 2), "same"), (5, 7, 2), 1),
    ("avgpool 2x2", lambda: AveragePooling(2), (6, 4, 2), 2),
    ("avgpool overlap 3/2", lambda: AveragePooling(3, 2), (7, 9, 2), 1),
    ("avgpool same stride3", lambda: AveragePooling(3, 3, "same"), (7, 8, 2), 2),
    ("maxpool1d overlap", lambda: MaxPooling1D(3, 2), (9, 2), 2),
    ("avgpool1d", lambda: AveragePooling1D(2), (8, 3), 1),
    ("maxpool3d overlap", lambda: MaxPooling3D(3, 2), (5, 7, 5, 2), 1),
    ("avgpool3d same", lambda: AveragePooling3D((2, 3, 2), 2, "same"), (5, 6, 3, 1), 2),
    ("global avg", lambda: GlobalAveragePooling2D(), (3, 5, 4), 2),
    ("global max", lambda: GlobalMaxPooling2D(), (3, 5, 4), 1),
    ("dense", lambda: Dense(5), (7,), 3),
    ("dense seed form sigmoid batch1", lambda: Dense(6, 4, activation="sigmoid"), (6,), 1),
    ("dense on 3-d input elu", lambda: Dense(3, activation="elu"), (2, 4, 5), 2),
    ("dense leakyrelu", lambda: Dense(4, activation="leakyrelu", alpha=0.2), (5,), 3),
    ("dense softmax", lambda: Dense(4, activation="softmax"), (6,), 3),
    ("flatten", lambda: Flatten(), (3, 4, 2), 2),
    ("reshape", lambda: Reshape((4, -1)), (3, 4, 2), 2),
    ("batchnorm dense", lambda: BatchNormalization(), (5,), 4),
    ("batchnorm conv", lambda: BatchNormalization(momentum=0.9), (3, 4, 2), 3),
    ("dropout", lambda: Dropout(0.4), (4, 5), 3),
] + [
    (f"activation {name}", lambda name=name: Activation(name), (3, 5), 2)
    for name in ("relu", "leakyrelu", "sigmoid", "tanh", "softmax", "elu", "linear")
]


@pytest.mark.parametrize("label, make, shape, batch", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_layer_backward_matches_finite_differences(label, make, shape, batch):
    layer = make()
    errors = gradcheck(layer, input_shape=shape, batch_size=batch, tolerance=TOL)
    assert errors["input"] < TOL
    assert set(errors) == {"input"} | set(layer.trainable_params)


def test_batchnorm_inference_backward():
    layer = BatchNormalization()
    layer.dtype = np.dtype(np.float64)
    layer.build((4,))
    layer.params["moving_mean"][:] = [0.5, -1.0, 2.0, 0.0]
    layer.params["moving_variance"][:] = [2.0, 0.5, 1.0, 3.0]
    errors = gradcheck(layer, batch_size=3, training=False)
    assert max(errors.values()) < TOL


def test_whole_lenet_like_network_gradient():
    net = Net(input_shape=(12, 10, 1), dtype="float64", seed=3)
    net.add(Convolutional(3, 5, pad=2, activation="relu"))
    net.add(MaxPooling(2))
    net.add(Convolutional(4, 3, stride=2, pad="same", activation="relu"))
    net.add(Flatten())
    net.add(Dense(6, activation="tanh"))
    net.add(Dense(3, activation="softmax"))
    errors = gradcheck(net, batch_size=2)
    assert len(errors) == 1 + 8 and max(errors.values()) < TOL


def test_gradcheck_catches_a_wrong_backward():
    class WrongSquare(Layer):
        def forward(self, x, training=False):
            self._x = x
            return x * x

        def backward(self, dy):
            return dy * self._x  # should be 2 * x * dy

    with pytest.raises(GradientCheckError, match="input"):
        gradcheck(WrongSquare(), input_shape=(3,))
    errors = gradcheck(WrongSquare(), input_shape=(3,), raise_on_failure=False)
    assert errors["input"] > 0.1
