"""Keras 3 layers and options (issue 15): activations, activation layers, dilated and grouped
convolutions, depthwise and separable convolutions, padding and cropping, normalisation, and the rest.

Oracles: finite differences in float64 (:func:`modularcnn.gradcheck`) on odd shapes; naive loops
(``tests/naive.py``) or formulas written out from Keras's documentation for every forward pass; PyTorch
where installed (skipped cleanly otherwise). HDF5 round trips of every layer are in tests/test_saving.py
(its FACTORIES table); here each layer's config round trip.
"""

import math
from pathlib import Path

import numpy as np
import pytest

from modularcnn import Net, activations, gradcheck, load_model
from modularcnn.layers import (
    ELU,
    Activation,
    Conv1D,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Dense,
    LeakyReLU,
    PReLU,
    ReLU,
    Softmax,
)

from . import naive
from .test_keras_files import keras_predicts

TOL = 1e-6
rng = np.random.default_rng(7)


def config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    return clone


# -- activations -----------------------------------------------------------------------------------

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
PHI = np.vectorize(lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2))))

# name -> formula written out independently of modularcnn.activations
FORMULAS = {
    "gelu": lambda x: x * PHI(x),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "swish": lambda x: x / (1 + np.exp(-x)),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1)),
    "softplus": lambda x: np.log(1 + np.exp(x)),
    "softsign": lambda x: x / (1 + abs(x)),
    "relu6": lambda x: np.minimum(np.maximum(x, 0), 6),
    "hard_sigmoid": lambda x: np.minimum(np.maximum(x + 3, 0), 6) / 6,
    "hard_silu": lambda x: x * np.minimum(np.maximum(x + 3, 0), 6) / 6,
    "exponential": np.exp,
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "leakyrelu": lambda x: np.where(x > 0, x, 0.3 * x),
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "linear": lambda x: x,
}


def spread_input(shape):
    """Values over [-8, 8] that keep clear of every kink (0, +-3, 6) by more than the FD step."""
    x = rng.uniform(-8, 8, size=shape)
    for kink in (0.0, 3.0, -3.0, 6.0):
        near = abs(x - kink) < 1e-3
        x[near] += 0.01
    return x


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_forward_matches_formula_and_gradient_checks(name):
    x = spread_input((3, 5, 7))
    layer = Activation(name)
    layer.dtype = np.dtype(np.float64)
    layer.build((5, 7))
    np.testing.assert_allclose(layer.forward(x), FORMULAS[name](x), rtol=1e-12, atol=1e-12)
    assert max(gradcheck(Activation(name), input_shape=(5, 7), x=spread_input((2, 5, 7))).values()) < TOL


def test_gelu_tanh_approximation_and_float32():
    x = spread_input((4, 6))
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    approx = activations.get({"name": "gelu", "approximate": True})
    np.testing.assert_allclose(approx.forward(x), expected, rtol=1e-12)
    layer = Activation(approx)
    assert max(gradcheck(layer, input_shape=(6,), x=x).values()) < TOL
    assert activations.gelu(x.astype(np.float32)).dtype == np.float32
    assert activations.GELU().forward(x.astype(np.float32)).dtype == np.float32


def test_keras_style_functions_work_as_arguments_and_on_arrays():
    x = np.array([-10, -5, 0.0, 5, 10])
    # The examples of Keras 3's keras.activations.relu docstring.
    np.testing.assert_array_equal(activations.relu(x), [0, 0, 0, 5, 10])
    np.testing.assert_array_equal(activations.relu(x, negative_slope=0.5), [-5, -2.5, 0, 5, 10])
    np.testing.assert_array_equal(activations.relu(x, max_value=5.0), [0, 0, 0, 5, 5])
    np.testing.assert_array_equal(activations.relu(x, threshold=5.0), [0, 0, 0, 0, 10])
    dense = Dense(3, activation=activations.gelu)
    assert isinstance(dense.activation, activations.GELU)
    assert dense.get_config()["activation"] == "gelu"
    assert activations.get(activations.leaky_relu).alpha == 0.2  # Keras's function default
    assert activations.get("swish") == activations.get("silu")


def test_custom_activation_pair_trains_saves_and_loads(tmp_path):
    def cube(z):  # sin, under another name: bounded, so training stays finite
        return np.sin(z)

    def cube_slope(z):
        return np.cos(z)

    layer = Activation((cube, cube_slope))
    assert max(gradcheck(layer, input_shape=(4, 3), x=rng.normal(size=(2, 4, 3))).values()) < TOL
    assert layer.get_config()["activation"] == "cube"
    # Unregistered, the name alone cannot be loaded: the error says how to fix it.
    with pytest.raises(ValueError, match="register"):
        Activation.from_config(layer.get_config())
    activations.register("cube_test", cube, cube_slope)
    net = Net(input_shape=(4,), seed=0)
    net.add(Dense(3, activation=(cube, cube_slope)))
    net.add(Dense(1, activation="cube_test"))
    net.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(6, 4)).astype(np.float32)
    net.train_on_batch(x, rng.normal(size=(6, 1)).astype(np.float32))
    net.save(tmp_path / "m.h5")
    from modularcnn import load_model
    loaded = load_model(tmp_path / "m.h5")
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


@pytest.mark.parametrize("bad, message", [
    (lambda z: z, "pair"),
    ((lambda z: z, None), "pair"),
    (42, "activation must be"),
    ("no_such", "unknown activation"),
    ({"name": "relu", "bogus": 1}, "does not take"),
])
def test_bad_activations_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        Dense(2, activation=bad)


def test_custom_activation_that_is_not_elementwise_is_refused():
    layer = Activation((lambda z: z.sum(axis=-1), lambda z: np.ones_like(z)))
    layer.build((3,))
    with pytest.raises(ValueError, match="element-wise"):
        layer.forward(np.ones((2, 3)))


# -- activation layers -----------------------------------------------------------------------------

def relu_oracle(x, max_value, negative_slope, threshold):
    """Keras 3's formula, element by element."""
    out = np.empty_like(x)
    for i, v in np.ndenumerate(x):
        if max_value is not None and v >= max_value:
            out[i] = max_value
        elif v > threshold:
            out[i] = v
        else:
            out[i] = negative_slope * (v - threshold)
    return out


ACTIVATION_LAYERS = [
    ("relu plain", lambda: ReLU(), lambda x: relu_oracle(x, None, 0.0, 0.0)),
    ("relu all options", lambda: ReLU(max_value=2.5, negative_slope=0.2, threshold=0.7),
     lambda x: relu_oracle(x, 2.5, 0.2, 0.7)),
    ("relu6", lambda: ReLU(max_value=6), lambda x: relu_oracle(x, 6.0, 0.0, 0.0)),
    ("leaky default 0.3", lambda: LeakyReLU(), lambda x: np.where(x > 0, x, 0.3 * x)),
    ("leaky 0.05", lambda: LeakyReLU(negative_slope=0.05), lambda x: np.where(x > 0, x, 0.05 * x)),
    ("elu default", lambda: ELU(), lambda x: np.where(x > 0, x, np.exp(x) - 1)),
    ("elu 0.5", lambda: ELU(alpha=0.5), lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
    ("softmax last", lambda: Softmax(), lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    ("softmax axis 1", lambda: Softmax(axis=1), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    ("softmax axis -2", lambda: Softmax(axis=-2), lambda x: np.exp(x) / np.exp(x).sum(-2, keepdims=True)),
]


@pytest.mark.parametrize("label, make, oracle", ACTIVATION_LAYERS, ids=[c[0] for c in ACTIVATION_LAYERS])
def test_activation_layers(label, make, oracle):
    x = rng.uniform(-4, 4, size=(1, 3, 5, 2))
    for kink in (0.0, 0.7, 2.5, 6.0):
        x[abs(x - kink) < 1e-3] += 0.01
    layer = make()
    layer.dtype = np.dtype(np.float64)
    layer.build((3, 5, 2))
    np.testing.assert_allclose(layer.forward(x), oracle(x), rtol=1e-12, atol=1e-12)
    assert max(gradcheck(make(), input_shape=(3, 5, 2), x=x).values()) < TOL
    config_round_trip(make())


def test_activation_layer_arguments_are_checked():
    for make, message in [(lambda: ReLU(max_value=-1), "max_value"),
                          (lambda: ReLU(negative_slope=-0.1), "negative_slope"),
                          (lambda: ReLU(threshold=-1), "threshold"),
                          (lambda: LeakyReLU(-0.2), "negative_slope"),
                          (lambda: Softmax(axis=1.5), "axis"),
                          (lambda: PReLU(shared_axes=[0]), "shared_axes"),
                          (lambda: PReLU(alpha_regularizer="l7"), "alpha_regularizer")]:
        with pytest.raises(ValueError, match=message):
            make()
    for layer, shape in [(Softmax(axis=3), (4, 5)), (Softmax(axis=0), (4,)), (PReLU(shared_axes=[3]), (4, 5))]:
        with pytest.raises(ValueError):
            layer.build(shape)


def test_softmax_along_other_axis_is_not_fused_with_cross_entropy():
    net = Net(input_shape=(3, 4), seed=0)
    net.add(Softmax(axis=1))
    net.compile(optimizer="sgd", loss="categorical_crossentropy")
    from modularcnn.training.objective import Objective
    assert Objective(net).mode != "fused"
    net_last = Net(input_shape=(3, 4), seed=0)
    net_last.add(Softmax(axis=2))  # the last axis, named positively
    net_last.compile(optimizer="sgd", loss="categorical_crossentropy")
    assert Objective(net_last).mode == "fused"


@pytest.mark.parametrize("shared_axes, shape", [(None, (3, 4, 2)), ([1, 2], (3, 4, 5)), (2, (5, 3))])
def test_prelu(shared_axes, shape):
    layer = PReLU(alpha_initializer="zeros", shared_axes=shared_axes)
    layer.build(shape)
    assert layer.params["alpha"].shape == tuple(
        1 if shared_axes is not None and i + 1 in np.atleast_1d(shared_axes) else n
        for i, n in enumerate(shape))
    assert not layer.params["alpha"].any()  # Keras's default: zeros
    layer.params["alpha"][...] = rng.uniform(0.1, 0.5, size=layer.params["alpha"].shape)
    x = rng.normal(size=(1,) + shape)
    expected = np.where(x > 0, x, np.broadcast_to(layer.params["alpha"], x.shape[1:]) * x)
    np.testing.assert_allclose(layer.forward(x.astype(np.float32)), expected, rtol=1e-6)
    check = PReLU(alpha_initializer="he_normal", shared_axes=shared_axes)
    assert max(gradcheck(check, input_shape=shape, x=x).values()) < TOL
    config_round_trip(check)


# -- dilated and grouped convolutions ----------------------------------------------------------------

CONV_CASES = [
    ("2d dilation 2x3 stride 2x1 same groups 2",
     lambda: Conv2D(4, (3, 2), strides=(2, 1), padding="same", dilation_rate=(2, 3), groups=2), (9, 8, 6), 1),
    ("2d dilation 2 valid", lambda: Conv2D(3, 3, dilation_rate=2), (7, 9, 1), 2),
    ("2d dilation 3 stride 2 pads", lambda: Conv2D(5, 2, strides=2, padding=((1, 0), 2), dilation_rate=3),
     (7, 6, 3), 2),
    ("2d groups 3 stride 2 same", lambda: Conv2D(6, 3, strides=2, padding="same", groups=3), (5, 7, 9), 1),
    ("2d depthwise-like groups = channels", lambda: Conv2D(6, 3, groups=3, activation="tanh"), (5, 4, 3), 2),
    ("1d dilation 2 stride 2 groups 3", lambda: Conv1D(3, 3, strides=2, dilation_rate=2, groups=3),
     (11, 3), 2),
    ("1d dilation 4 same", lambda: Conv1D(2, 2, padding="same", dilation_rate=4), (9, 2), 1),
    ("3d dilation 1x2x2 pad 1", lambda: Conv3D(2, 2, padding=1, dilation_rate=(1, 2, 2)), (4, 5, 5, 1), 1),
    ("3d groups 2 stride 2", lambda: Conv3D(4, 2, strides=2, groups=2, use_bias=False), (3, 4, 5, 4), 1),
]


@pytest.mark.parametrize("label, make, shape, batch", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_dilated_and_grouped_convolutions(label, make, shape, batch):
    layer = make()
    assert max(gradcheck(layer, input_shape=shape, batch_size=batch).values()) < TOL
    x = rng.normal(size=(batch,) + shape)
    z = naive.conv_nd(x, layer.params["kernel"], layer.params.get("bias"), layer.stride, layer.pads,
                      layer.dilation_rate, layer.groups)
    expected = layer.activation.forward(z)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-12)
    # Inference in slices of samples gives the same values.
    layer.INFERENCE_WINDOW_BYTES = 1
    np.testing.assert_allclose(layer.forward(np.concatenate([x, x])), np.concatenate([expected] * 2),
                               rtol=1e-10, atol=1e-12)
    config_round_trip(make())


def test_dilated_output_sizes_follow_keras():
    # Keras: the window spans d*(k-1)+1 cells; "same" gives ceil(n / stride).
    assert Conv2D(1, 3, dilation_rate=2, input_shape=(10, 9, 1)).compute_output_shape((10, 9, 1)) == (6, 5, 1)
    assert Conv2D(1, 3, padding="same", strides=2, dilation_rate=3).compute_output_shape((10, 9, 1)) == (5, 5, 1)
    assert Conv1D(2, 5, dilation_rate=(3,)).compute_output_shape((20, 4)) == (8, 2)


def test_grouped_and_dilated_options_are_refused_when_unsupported():
    with pytest.raises(ValueError, match="groups=3 must divide filters=4"):
        Conv2D(4, 3, groups=3)
    with pytest.raises(ValueError, match="must divide the input's 5 channels"):
        Conv2D(4, 3, groups=2).build((6, 6, 5))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="groups"):
            Conv2D(4, 3, groups=bad)
    with pytest.raises(ValueError, match="dilation_rate"):
        Conv2D(4, 3, dilation_rate=0)
    with pytest.raises(ValueError, match="does not fit"):
        Conv2D(4, 3, dilation_rate=4).build((6, 6, 1))
    with pytest.raises(ValueError, match="not supported for transposed"):
        Conv2DTranspose(4, 3, dilation_rate=2)


def test_dilated_convolution_is_never_fused():
    from modularcnn.execution import can_fuse
    from modularcnn.layers import MaxPooling
    pool = MaxPooling(2)
    for conv in (Conv2D(4, 3, padding="same", dilation_rate=2, activation="relu"),
                 Conv2D(4, 3, padding="same", groups=2, activation="relu")):
        conv.build((8, 8, 2))
        pool.build(conv.output_shape)
        assert not can_fuse(conv, pool)


# -- PyTorch, when installed ------------------------------------------------------------------------

def test_against_pytorch():
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(2, 9, 8, 6))
    layer = Conv2D(4, (3, 2), strides=(2, 1), padding=((2, 2), (1, 2)), dilation_rate=(2, 3), groups=2)
    layer.dtype = np.dtype(np.float64)
    layer.build((9, 8, 6))
    xt = torch.tensor(x).permute(0, 3, 1, 2)
    xt = torch.nn.functional.pad(xt, (1, 2, 2, 2))
    w = torch.tensor(layer.params["kernel"]).permute(3, 2, 0, 1)
    yt = torch.nn.functional.conv2d(xt, w, torch.tensor(layer.params["bias"]), stride=(2, 1),
                                    dilation=(2, 3), groups=2)
    np.testing.assert_allclose(layer.forward(x), yt.permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-12)
    z = torch.tensor(rng.normal(size=(3, 7)))
    for ours, theirs in [("gelu", torch.nn.functional.gelu), ("selu", torch.selu),
                         ("silu", torch.nn.functional.silu), ("softplus", torch.nn.functional.softplus),
                         ("hard_silu", torch.nn.functional.hardswish), ("relu6", torch.nn.functional.relu6)]:
        np.testing.assert_allclose(activations.get(ours).forward(z.numpy()), theirs(z).numpy(),
                                   rtol=1e-7, atol=1e-12)


# -- depthwise and separable convolutions -----------------------------------------------------------

from modularcnn.layers import (  # noqa: E402 - grouped with the tests that use them
    BatchNormalization,
    Cropping1D,
    Cropping2D,
    Cropping3D,
    DepthwiseConv1D,
    DepthwiseConv2D,
    Dropout,
    Flatten,
    GaussianDropout,
    GaussianNoise,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
    GroupNormalization,
    LayerNormalization,
    Permute,
    Rescaling,
    SeparableConv1D,
    SeparableConv2D,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
    UpSampling2D,
    ZeroPadding1D,
    ZeroPadding2D,
    ZeroPadding3D,
)

DEPTHWISE_CASES = [
    ("depthwise 3x2 stride 2x1 same multiplier 2",
     lambda: DepthwiseConv2D((3, 2), strides=(2, 1), padding="same", depth_multiplier=2), (7, 6, 3), 1),
    ("depthwise dilation 2 valid tanh", lambda: DepthwiseConv2D(3, dilation_rate=(2, 1), activation="tanh"),
     (8, 5, 2), 2),
    ("depthwise one channel multiplier 3 pads",
     lambda: DepthwiseConv2D(2, strides=2, padding=((1, 0), 2), depth_multiplier=3, use_bias=False),
     (5, 6, 1), 2),
    ("depthwise 1d stride 2 dilation 2", lambda: DepthwiseConv1D(3, strides=2, dilation_rate=2,
                                                                 depth_multiplier=2), (11, 3), 1),
]


@pytest.mark.parametrize("label, make, shape, batch", DEPTHWISE_CASES, ids=[c[0] for c in DEPTHWISE_CASES])
def test_depthwise_convolution(label, make, shape, batch):
    layer = make()
    assert max(gradcheck(layer, input_shape=shape, batch_size=batch).values()) < TOL
    x = rng.normal(size=(batch,) + shape)
    kernel = layer.params["depthwise_kernel"]
    assert kernel.shape == layer.kernel_size + (shape[-1], layer.depth_multiplier)  # Keras's layout
    z = naive.depthwise_conv(x, kernel, layer.params.get("bias"), layer.strides, layer.pads,
                             layer.dilation_rate)
    expected = layer.activation.forward(z)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-12)
    layer.INFERENCE_WINDOW_BYTES = 1  # in slices of samples: the same values
    np.testing.assert_allclose(layer.forward(np.concatenate([x, x])), np.concatenate([expected] * 2),
                               rtol=1e-10, atol=1e-12)
    config_round_trip(make())


SEPARABLE_CASES = [
    ("separable 3x3 same stride 2 multiplier 2 relu",
     lambda: SeparableConv2D(4, 3, strides=2, padding="same", depth_multiplier=2, activation="elu"),
     (7, 5, 3), 1),
    ("separable dilation 2 valid no bias", lambda: SeparableConv2D(2, (2, 3), dilation_rate=2, use_bias=False),
     (6, 8, 2), 2),
    ("separable 1d", lambda: SeparableConv1D(3, 4, strides=3, padding="same"), (10, 2), 2),
]


@pytest.mark.parametrize("label, make, shape, batch", SEPARABLE_CASES, ids=[c[0] for c in SEPARABLE_CASES])
def test_separable_convolution(label, make, shape, batch):
    layer = make()
    assert max(gradcheck(layer, input_shape=shape, batch_size=batch).values()) < TOL
    x = rng.normal(size=(batch,) + shape)
    depthwise = naive.depthwise_conv(x, layer.params["depthwise_kernel"], None, layer.strides, layer.pads,
                                     layer.dilation_rate)
    z = naive.pointwise(depthwise, layer.params["pointwise_kernel"], layer.params.get("bias"))
    np.testing.assert_allclose(layer.forward(x), layer.activation.forward(z), rtol=1e-10, atol=1e-12)
    assert layer.params["pointwise_kernel"].shape == (1,) * layer.rank + (
        shape[-1] * layer.depth_multiplier, layer.filters)
    config_round_trip(make())


def test_depthwise_arguments_are_checked():
    for make, message in [(lambda: DepthwiseConv2D(3, depth_multiplier=0), "depth_multiplier"),
                          (lambda: DepthwiseConv2D(3, data_format="channels_first"), "channels-last"),
                          (lambda: SeparableConv2D(0, 3), "filters"),
                          (lambda: DepthwiseConv2D((3, 3, 3)), "kernel_size"),
                          (lambda: DepthwiseConv2D(3, padding="full"), "padding")]:
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.raises(ValueError, match="does not fit"):
        DepthwiseConv2D(3, dilation_rate=3).build((5, 5, 2))


# -- padding, cropping, permute, rescaling -----------------------------------------------------------

BORDER_CASES = [
    ("zeropad2d int", lambda: ZeroPadding2D(1), (3, 4, 2), "pad", ((1, 1), (1, 1))),
    ("zeropad2d symmetric per axis", lambda: ZeroPadding2D((2, 0)), (3, 4, 2), "pad", ((2, 2), (0, 0))),
    ("zeropad2d pairs", lambda: ZeroPadding2D(((0, 2), (3, 1))), (3, 4, 1), "pad", ((0, 2), (3, 1))),
    ("zeropad1d pair", lambda: ZeroPadding1D((1, 3)), (5, 2), "pad", ((1, 3),)),
    ("zeropad3d", lambda: ZeroPadding3D((1, (0, 2), 1)), (2, 3, 2, 2), "pad", ((1, 1), (0, 2), (1, 1))),
    ("crop2d pairs", lambda: Cropping2D(((1, 0), (2, 1))), (4, 6, 2), "crop", ((1, 0), (2, 1))),
    ("crop2d int", lambda: Cropping2D(1), (4, 5, 3), "crop", ((1, 1), (1, 1))),
    ("crop1d default", lambda: Cropping1D(), (5, 2), "crop", ((1, 1),)),
    ("crop3d", lambda: Cropping3D((1, 0, (0, 2))), (3, 4, 5, 1), "crop", ((1, 1), (0, 0), (0, 2))),
]


@pytest.mark.parametrize("label, make, shape, kind, pairs", BORDER_CASES, ids=[c[0] for c in BORDER_CASES])
def test_padding_and_cropping(label, make, shape, kind, pairs):
    layer = make()
    assert max(gradcheck(layer, input_shape=shape, batch_size=1).values()) < TOL
    x = rng.normal(size=(2,) + shape)
    oracle = naive.zero_pad if kind == "pad" else naive.crop
    np.testing.assert_array_equal(layer.forward(x), oracle(x, pairs))
    assert layer.compute_output_shape(shape) == oracle(x, pairs).shape[1:]
    config_round_trip(make())


def test_padding_and_cropping_arguments_are_checked():
    for make, message in [(lambda: ZeroPadding2D(-1), "padding"), (lambda: ZeroPadding2D((1, 2, 3)), "padding"),
                          (lambda: ZeroPadding1D(((1, 2), (3, 4))), "padding"),
                          (lambda: Cropping2D(1.5), "cropping"),
                          (lambda: ZeroPadding2D(1, data_format="channels_first"), "channels-last")]:
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.raises(ValueError, match="leaves nothing"):
        Cropping2D(((2, 2), (0, 0))).build((4, 5, 1))
    with pytest.raises(ValueError, match="rank 3"):
        ZeroPadding2D(1).build((4, 5))


@pytest.mark.parametrize("dims, shape", [((2, 1), (3, 5)), ((3, 1, 2), (2, 3, 4)), ((1, 2), (4, 2))])
def test_permute(dims, shape):
    layer = Permute(dims)
    assert max(gradcheck(layer, input_shape=shape, batch_size=1).values()) < TOL
    x = rng.normal(size=(2,) + shape)
    np.testing.assert_array_equal(layer.forward(x), naive.permute(x, dims))
    config_round_trip(Permute(dims))
    for bad in ((0, 1), (1, 1), (2, 3), (), "21"):
        with pytest.raises(ValueError, match="dims"):
            Permute(bad)
    with pytest.raises(ValueError, match="permute 2 axes"):
        Permute((2, 1)).build((2, 3, 4))


@pytest.mark.parametrize("scale, offset, shape", [(1 / 255, 0.0, (4, 3, 2)), (2.0, -1.0, (5,)),
                                                  ([0.5, 1.0, 2.0], [[1.0, 0.0, -1.0]], (2, 3))])
def test_rescaling(scale, offset, shape):
    layer = Rescaling(scale, offset)
    assert max(gradcheck(layer, input_shape=shape, batch_size=1).values()) < TOL
    x = rng.normal(size=(2,) + shape)
    expected = np.empty_like(x)
    s, o = np.broadcast_to(scale, shape), np.broadcast_to(offset, shape)
    for index in np.ndindex(*x.shape):
        expected[index] = x[index] * s[index[1:]] + o[index[1:]]
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-15)
    layer32 = Rescaling(scale, offset)
    layer32.build(shape)
    assert layer32.forward(x.astype(np.float32)).dtype == np.float32
    config_round_trip(Rescaling(scale, offset))
    with pytest.raises(ValueError, match="scale"):
        Rescaling("x")
    with pytest.raises(ValueError, match="does not broadcast"):
        Rescaling([1.0, 2.0]).build((3,))


# -- normalisation ---------------------------------------------------------------------------------

def randomise_affine(layer):
    for key in ("gamma", "beta"):
        if key in layer.params:
            layer.params[key][...] = rng.normal(size=layer.params[key].shape)


LAYER_NORM_CASES = [
    ("last axis", lambda: LayerNormalization(), (3, 4, 5), [3]),
    ("axes 1 2", lambda: LayerNormalization(axis=[1, 2], epsilon=1e-5), (3, 4, 2), [1, 2]),
    ("axis 1 of 3", lambda: LayerNormalization(axis=1), (3, 4, 2), [1]),
    ("dense features no center", lambda: LayerNormalization(center=False), (6,), [1]),
    ("every axis no scale", lambda: LayerNormalization(axis=[-3, -2, -1], scale=False), (2, 3, 4), [1, 2, 3]),
]


@pytest.mark.parametrize("label, make, shape, axes", LAYER_NORM_CASES, ids=[c[0] for c in LAYER_NORM_CASES])
def test_layer_normalization(label, make, shape, axes):
    layer = make()
    layer.dtype = np.dtype(np.float64)
    layer.build(shape)
    randomise_affine(layer)
    x = rng.normal(size=(2,) + shape) * 3 + 1
    param_shape = tuple(((None,) + shape)[a] for a in axes)
    gamma = layer.params.get("gamma", np.ones(param_shape))
    beta = layer.params.get("beta", np.zeros(param_shape))
    expected = naive.layer_norm(x, axes, gamma, beta, layer.epsilon)
    for training in (True, False):
        np.testing.assert_allclose(layer.forward(x, training=training), expected, rtol=1e-10, atol=1e-12)
    check = make()
    assert max(gradcheck(check, input_shape=shape, batch_size=1).values()) < TOL
    randomise_affine(check)
    assert max(gradcheck(check, input_shape=shape, batch_size=2).values()) < TOL
    config_round_trip(make())


@pytest.mark.parametrize("groups, shape, kwargs", [(2, (3, 4, 6), {}), (3, (5, 3), {"epsilon": 0.1}),
                                                   (1, (2, 3, 2, 4), {"center": False}),
                                                   (4, (3, 4), {"scale": False})])
def test_group_normalization(groups, shape, kwargs):
    layer = GroupNormalization(groups, **kwargs)
    layer.dtype = np.dtype(np.float64)
    layer.build(shape)
    randomise_affine(layer)
    x = rng.normal(size=(2,) + shape) * 2 - 1
    gamma = layer.params.get("gamma", np.ones(shape[-1]))
    beta = layer.params.get("beta", np.zeros(shape[-1]))
    np.testing.assert_allclose(layer.forward(x), naive.group_norm(x, groups, gamma, beta, layer.epsilon),
                               rtol=1e-10, atol=1e-12)
    check = GroupNormalization(groups, **kwargs)
    assert max(gradcheck(check, input_shape=shape, batch_size=1).values()) < TOL
    randomise_affine(check)
    assert max(gradcheck(check, input_shape=shape, batch_size=2).values()) < TOL
    config_round_trip(GroupNormalization(groups, **kwargs))


def test_normalization_arguments_are_checked():
    with pytest.raises(ValueError, match="must divide the 6 channels"):
        GroupNormalization(4).build((3, 6))
    with pytest.raises(ValueError, match="only the last"):
        GroupNormalization(2, axis=1).build((4, 6))
    with pytest.raises(ValueError, match="rms_scaling"):
        LayerNormalization(rms_scaling=True)
    with pytest.raises(ValueError, match="not a feature axis"):
        LayerNormalization(axis=0).build((3,))
    with pytest.raises(ValueError, match="not a feature axis"):
        LayerNormalization(axis=3).build((3, 4))
    with pytest.raises(ValueError, match="twice"):
        LayerNormalization(axis=[1, -1]).build((3,))
    with pytest.raises(ValueError, match="axis"):
        BatchNormalization(axis=[1, 2])
    with pytest.raises(ValueError, match="not a feature axis"):
        BatchNormalization(axis=2).build((4,))
    with pytest.raises(ValueError, match="gamma_regularizer"):
        LayerNormalization(gamma_regularizer="l2")


@pytest.mark.parametrize("axis, shape, kwargs", [(1, (3, 4, 2), {}), (-2, (5, 3), {"center": False}),
                                                 (-1, (3, 4), {"scale": False}),
                                                 (2, (2, 3, 2), {"center": False, "scale": False})])
def test_batch_normalization_axis_center_scale(axis, shape, kwargs):
    layer = BatchNormalization(axis=axis, momentum=0.5, **kwargs)
    layer.dtype = np.dtype(np.float64)
    layer.build(shape)
    randomise_affine(layer)
    feature = axis % (len(shape) + 1)
    size = shape[feature - 1]
    assert set(layer.params) == {"moving_mean", "moving_variance"} | (
        {"gamma"} if kwargs.get("scale", True) else set()) | ({"beta"} if kwargs.get("center", True) else set())
    x = rng.normal(size=(3,) + shape) * 2 + 0.5
    moved = np.moveaxis(x, feature, -1).reshape(-1, size)
    mean, var = moved.mean(axis=0), moved.var(axis=0)
    gamma = layer.params.get("gamma", np.ones(size))
    beta = layer.params.get("beta", np.zeros(size))
    expected = np.empty_like(x)
    for index in np.ndindex(*x.shape):
        f = index[feature]
        expected[index] = (x[index] - mean[f]) / np.sqrt(var[f] + layer.epsilon) * gamma[f] + beta[f]
    np.testing.assert_allclose(layer.forward(x, training=True), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.params["moving_mean"], 0.5 * mean, rtol=1e-12)
    check = BatchNormalization(axis=axis, **kwargs)
    assert max(gradcheck(check, input_shape=shape, batch_size=3).values()) < TOL
    randomise_affine(check)
    assert max(gradcheck(check, input_shape=shape, batch_size=2).values()) < TOL
    check.params["moving_variance"][...] = rng.uniform(0.5, 2, size)
    assert max(gradcheck(check, input_shape=shape, batch_size=1, training=False).values()) < TOL
    config_round_trip(BatchNormalization(axis=axis, **kwargs))


# -- noise layers and seeds ------------------------------------------------------------------------

@pytest.mark.parametrize("make, shape", [(lambda: SpatialDropout2D(0.5), (3, 4, 6)),
                                         (lambda: SpatialDropout1D(0.3), (5, 8)),
                                         (lambda: SpatialDropout3D(0.4), (2, 3, 2, 8)),
                                         (lambda: Dropout(0.5, noise_shape=[None, 1, 4]), (3, 4))])
def test_spatial_dropout_drops_whole_channels(make, shape):
    layer = make()
    layer.build(shape)
    x = rng.uniform(1, 2, size=(6,) + shape)
    assert layer.forward(x) is x  # inference: the identity
    y = layer.forward(x, training=True)
    kept = (y != 0)
    # Every spatial position of a (sample, channel) shares its fate, and kept values are scaled.
    flat = kept.reshape(6, -1, shape[-1])
    assert (flat == flat[:, :1]).all()
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(y[kept], x[kept] / (1 - layer.rate), rtol=1e-12)
    assert max(gradcheck(make(), input_shape=shape, batch_size=2).values()) < TOL
    config_round_trip(make())


def test_gaussian_noise_and_dropout_statistics_and_gradients():
    x = np.full((400, 50), 2.0)
    noise = GaussianNoise(0.5, seed=1)
    noise.build((50,))
    assert noise.forward(x) is x
    added = noise.forward(x, training=True) - x
    assert abs(added.mean()) < 0.01 and abs(added.std() - 0.5) < 0.01
    drop = GaussianDropout(0.2, seed=1)
    drop.build((50,))
    factor = drop.forward(x, training=True) / x
    assert abs(factor.mean() - 1) < 0.01 and abs(factor.std() - math.sqrt(0.2 / 0.8)) < 0.01
    for make in (lambda: GaussianNoise(0.3), lambda: GaussianDropout(0.4)):
        assert max(gradcheck(make(), input_shape=(3, 4), batch_size=1).values()) < TOL
        config_round_trip(make())
    for make, message in [(lambda: GaussianNoise(-1), "stddev"), (lambda: GaussianDropout(1.0), "rate"),
                          (lambda: Dropout(0.5, seed=-1), "seed"), (lambda: Dropout(0.5, noise_shape=3),
                                                                    "noise_shape")]:
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.raises(ValueError, match="noise_shape"):
        Dropout(0.5, noise_shape=[None, 2]).build((3,))


def test_seeded_dropout_repeats_whatever_the_network_seed():
    x = np.ones((4, 20), dtype=np.float32)
    masks = []
    for net_seed in (0, 1):
        net = Net(input_shape=(20,), seed=net_seed)
        net.add(Dropout(0.5, seed=42))
        masks.append([net.forward(x, training=True) for _ in range(2)])
    np.testing.assert_array_equal(masks[0][0], masks[1][0])
    np.testing.assert_array_equal(masks[0][1], masks[1][1])
    assert not np.array_equal(masks[0][0], masks[0][1])  # the stream moves on between calls
    unseeded = []
    for net_seed in (0, 1):
        net = Net(input_shape=(20,), seed=net_seed)
        net.add(Dropout(0.5))
        unseeded.append(net.forward(x, training=True))
    assert not np.array_equal(*unseeded)


# -- global pooling with keepdims ------------------------------------------------------------------

GLOBAL_CASES = [
    (GlobalAveragePooling1D, (7, 3), "mean"), (GlobalMaxPooling1D, (7, 3), "max"),
    (GlobalAveragePooling2D, (3, 5, 2), "mean"), (GlobalMaxPooling2D, (3, 5, 2), "max"),
    (GlobalAveragePooling3D, (2, 3, 4, 2), "mean"), (GlobalMaxPooling3D, (2, 3, 4, 2), "max"),
]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("cls, shape, kind", GLOBAL_CASES, ids=[c[0].__name__ for c in GLOBAL_CASES])
def test_global_pooling(cls, shape, kind, keepdims):
    layer = cls(keepdims=keepdims)
    assert max(gradcheck(layer, input_shape=shape, batch_size=1).values()) < TOL
    x = rng.normal(size=(2,) + shape)
    expected = np.zeros((2, shape[-1]))
    for b, c in np.ndindex(2, shape[-1]):
        values = [x[(b, *cell, c)] for cell in np.ndindex(*shape[:-1])]
        expected[b, c] = max(values) if kind == "max" else sum(values) / len(values)
    if keepdims:
        expected = expected.reshape((2,) + (1,) * (len(shape) - 1) + (shape[-1],))
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12)
    assert layer.output_shape == expected.shape[1:]
    config_round_trip(cls(keepdims=keepdims))
    with pytest.raises(ValueError, match="rank"):
        cls().build(shape + (2,))


# -- bilinear upsampling ---------------------------------------------------------------------------

@pytest.mark.parametrize("size, shape", [((2, 3), (3, 4, 2)), (2, (1, 5, 1)), ((1, 4), (2, 2, 3)), (3, (4, 3, 1))])
def test_bilinear_upsampling(size, shape):
    layer = UpSampling2D(size, interpolation="bilinear")
    assert max(gradcheck(layer, input_shape=shape, batch_size=1).values()) < TOL
    x = rng.normal(size=(2,) + shape)
    factors = layer.size
    np.testing.assert_allclose(layer.forward(x), naive.bilinear_upsample(x, factors), rtol=1e-12, atol=1e-14)
    config_round_trip(UpSampling2D(size, interpolation="bilinear"))


def test_bilinear_upsampling_matches_keras_example():
    # Computed by hand from tf.image.resize's half-pixel rule: a 2-cell row [0, 1] upsampled 2 times
    # samples -0.25 (clamped to 0), 0.25, 0.75 and 1.25 (clamped to 1).
    layer = UpSampling2D((1, 2), interpolation="bilinear")
    layer.build((1, 2, 1))
    np.testing.assert_allclose(layer.forward(np.array([[[[0.0], [1.0]]]]))[0, 0, :, 0], [0, 0.25, 0.75, 1])
    for bad in ("bicubic", "area", "Bilinear"):
        with pytest.raises(ValueError, match="interpolation"):
            UpSampling2D(interpolation=bad)
    from modularcnn.layers import UpSampling1D
    with pytest.raises(ValueError, match="interpolation"):
        UpSampling1D(interpolation="bilinear")


def test_new_layers_against_pytorch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.normal(size=(2, 7, 6, 4))
    xt = torch.tensor(x).permute(0, 3, 1, 2)
    # Depthwise: PyTorch's groups=C with weight (C * M, 1, kh, kw), channel c*M+m.
    layer = DepthwiseConv2D((3, 2), strides=(2, 1), depth_multiplier=2, dilation_rate=(1, 2))
    layer.dtype = np.dtype(np.float64)
    layer.build((7, 6, 4))
    k = layer.params["depthwise_kernel"]
    w = torch.tensor(k.reshape(3, 2, 8)).permute(2, 0, 1)[:, None]
    yt = F.conv2d(xt, w, torch.tensor(layer.params["bias"]), stride=(2, 1), dilation=(1, 2), groups=4)
    np.testing.assert_allclose(layer.forward(x), yt.permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-12)
    # Bilinear upsampling: align_corners=False is the half-pixel rule.
    up = UpSampling2D((2, 3), interpolation="bilinear")
    up.build((7, 6, 4))
    yt = F.interpolate(xt, scale_factor=(2, 3), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(up.forward(x), yt.permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-12)
    # Group and layer normalisation (PyTorch's are channels-first; eps given explicitly).
    gn = GroupNormalization(2, epsilon=1e-3)
    gn.dtype = np.dtype(np.float64)
    gn.build((7, 6, 4))
    yt = F.group_norm(xt, 2, eps=1e-3)
    np.testing.assert_allclose(gn.forward(x), yt.permute(0, 2, 3, 1).numpy(), rtol=1e-9, atol=1e-12)
    ln = LayerNormalization(axis=[1, 2, 3], epsilon=1e-3)
    ln.dtype = np.dtype(np.float64)
    ln.build((7, 6, 4))
    yt = F.layer_norm(torch.tensor(x), (7, 6, 4), eps=1e-3)
    np.testing.assert_allclose(ln.forward(x), yt.numpy(), rtol=1e-9, atol=1e-12)


# -- Keras files: read what Keras 3 wrote, write what Keras 3 reads ---------------------------------

KERAS3_FIXTURES = Path(__file__).resolve().parent / "data" / "keras" / "keras3"
KERAS3_NAMES = sorted(p.stem for p in KERAS3_FIXTURES.glob("*.npz"))


def test_keras3_fixtures_are_there():
    # Written by scripts/make_keras_fixtures.py (new_layer_models) with Keras 3 (torch backend).
    assert KERAS3_NAMES == ["depthwise_separable", "normalisation_shapes", "sequences", "volumes"]


@pytest.mark.parametrize("name", KERAS3_NAMES)
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras3_layers_predict_what_keras_predicted(name, suffix):
    data = np.load(KERAS3_FIXTURES / f"{name}.npz")
    net = load_model(KERAS3_FIXTURES / f"{name}{suffix}")
    scale = max(1.0, float(np.abs(data["y"]).max()))
    np.testing.assert_allclose(net.predict(data["x"]), data["y"], rtol=0, atol=1e-5 * scale)
    net.set_weights([np.zeros_like(w) for w in net.get_weights()])
    net.load_weights(KERAS3_FIXTURES / f"{name}.weights.h5")
    np.testing.assert_allclose(net.predict(data["x"]), data["y"], rtol=0, atol=1e-5 * scale)
    # Written back as .keras and read again: the same network.
    if name == "normalisation_shapes":
        layers = {type(layer).__name__ for layer in net.layers}
        assert {"ReLU", "PReLU", "Softmax", "GaussianNoise", "SpatialDropout2D"} <= layers


def every_new_layer_net():
    """A network of the issue-15 layers that Keras 3 can express, with random weights."""
    net = Net(input_shape=(9, 8, 3), seed=2, name="new_layers")
    for layer in [
            DepthwiseConv2D(3, padding=((1, 0), (1, 1)), depth_multiplier=2, activation="relu"),
            SeparableConv2D(4, (3, 2), padding="same", activation="gelu"),
            Conv2D(4, 3, dilation_rate=2, groups=2, padding="same", activation="hard_silu"),
            ZeroPadding2D(((1, 0), (0, 2))), Cropping2D(((0, 1), (1, 0))),
            LayerNormalization(axis=[1, 3]), GroupNormalization(2),
            BatchNormalization(axis=2, center=False), Permute((2, 1, 3)), Rescaling(0.5, 0.25),
            UpSampling2D((2, 1), interpolation="bilinear"), SpatialDropout2D(0.2), GaussianNoise(0.1),
            GaussianDropout(0.1), Dropout(0.2, seed=4), ReLU(max_value=2.0, threshold=0.1),
            PReLU(shared_axes=[1, 2]), Softmax(axis=1), GlobalMaxPooling2D(keepdims=True),
            Activation("selu"), Dense(4, activation={"name": "relu", "max_value": 3.0}), Flatten(),
            Dense(3, activation="softsign")]:
        net.add(layer)
    rng = np.random.default_rng(1)
    net.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in key else rng.normal(0, 0.5, w.shape)
                     for (key, w) in ((k, v) for layer in net.layers for k, v in layer.params.items())])
    return net


def test_new_layers_write_to_keras_and_read_back_exactly(tmp_path):
    net = every_new_layer_net()
    x = np.random.default_rng(0).normal(size=(3, 9, 8, 3)).astype("float32")
    net.save(tmp_path / "new.keras")
    loaded = load_model(tmp_path / "new.keras")
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


def test_keras_opens_the_new_layers_and_predicts_the_same(tmp_path, monkeypatch):
    net = every_new_layer_net()
    x = np.random.default_rng(0).normal(size=(3, 9, 8, 3)).astype("float32")
    np.testing.assert_allclose(keras_predicts(net, x, tmp_path, monkeypatch), net.predict(x),
                               rtol=0, atol=1e-5)


def test_layers_keras_cannot_express_are_refused(tmp_path):
    for layer, message in [(Dense(3, activation={"name": "gelu", "approximate": True}), "approximate"),
                           (Conv2D(2, 3, pad=1, pad_value=1.0), "pad_value")]:
        net = Net(input_shape=(5, 5, 2))
        net.add(layer)
        with pytest.raises(ValueError, match=message):
            net.save(tmp_path / "x.keras")
        assert not (tmp_path / "x.keras").exists()
