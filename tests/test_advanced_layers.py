"""Conv2DTranspose, UpSampling2D, Residual, and the trainable switches.

Oracles: finite differences in float64 (relative error < 1e-6), a naive scatter loop for the transposed
convolution, the adjoint identity <T x, y> = <x, conv(y)>, ``np.repeat`` for nearest-neighbour upsampling,
and output sizes written out by hand from Keras's formulas.
"""

import json

import numpy as np
import pytest

from modularcnn import Net, gradcheck
from modularcnn.layers import (
    Activation,
    BatchNormalization,
    Conv1DTranspose,
    Conv2D,
    Conv2DTranspose,
    Conv3DTranspose,
    Convolutional,
    Dense,
    Dropout,
    Flatten,
    MaxPooling,
    Reshape,
    Residual,
    UpSampling1D,
    UpSampling2D,
    UpSampling3D,
    get_layer_class,
)

TOL = 1e-6


def conv_bn(filters, stride=1):
    # No bias before batch norm: BN cancels it, so its gradient is exactly zero (and the relative error
    # against finite-difference noise meaningless).
    return [Convolutional(filters, 3, stride, "same", use_bias=False), BatchNormalization(momentum=0.9)]


# -- Conv2DTranspose -------------------------------------------------------------------------------

TRANSPOSE_CASES = [
    ("stride2 same", lambda: Conv2DTranspose(3, 3, 2, "same"), (4, 5, 2), 2),
    ("stride2 valid nonsquare kernel", lambda: Conv2DTranspose(2, (3, 2), 2, "valid"), (3, 4, 3), 2),
    ("stride2 same nonsquare kernel batch1", lambda: Conv2DTranspose(3, (2, 5), 2, "same"), (3, 2, 2), 1),
    ("kernel smaller than stride valid", lambda: Conv2DTranspose(2, 2, 3, "valid"), (3, 2, 2), 2),
    ("kernel smaller than stride same", lambda: Conv2DTranspose(2, (2, 1), (3, 2), "same"), (2, 3, 1), 2),
    ("explicit pads tanh",
     lambda: Conv2DTranspose(2, 4, (2, 3), ((1, 2), 1), activation="tanh"), (3, 4, 2), 2),
    ("no bias leakyrelu", lambda: Conv2DTranspose(2, 3, 1, use_bias=False, activation="leakyrelu",
                                                   alpha=0.2), (3, 3, 2), 1),
    ("1d stride2 same", lambda: Conv1DTranspose(3, 3, 2, "same"), (5, 2), 2),
    ("3d stride2 valid", lambda: Conv3DTranspose(2, (2, 3, 2), (2, 1, 2), "valid"), (2, 3, 2, 2), 1),
]


@pytest.mark.parametrize("label, make, shape, batch", TRANSPOSE_CASES,
                         ids=[c[0] for c in TRANSPOSE_CASES])
def test_conv_transpose_gradients(label, make, shape, batch):
    layer = make()
    errors = gradcheck(layer, input_shape=shape, batch_size=batch, tolerance=TOL)
    assert set(errors) == {"input"} | set(layer.trainable_params)


# (H, W), kernel, stride, padding -> (Ho, Wo), from Keras: valid H*s + max(k - s, 0), same H*s.
KERAS_SHAPES = [
    ((7, 7), 3, 2, "valid", (15, 15)),
    ((7, 7), 3, 2, "same", (14, 14)),
    ((7, 5), (4, 2), 2, "valid", (16, 10)),
    ((7, 5), (4, 2), 2, "same", (14, 10)),
    ((3, 3), 2, 3, "valid", (9, 9)),        # k < s: H * s, not (H - 1) * s + k
    ((4, 6), 5, 1, "valid", (8, 10)),
    ((4, 6), 5, 1, "same", (4, 6)),
    ((5, 2), (1, 3), (3, 2), "same", (15, 4)),
]


@pytest.mark.parametrize("size, kernel, stride, padding, expected", KERAS_SHAPES)
def test_conv_transpose_output_shape_matches_keras(size, kernel, stride, padding, expected):
    layer = Conv2DTranspose(4, kernel_size=kernel, strides=stride, padding=padding)
    net = Net(input_shape=size + (3,))
    net.add(layer)
    assert layer.output_shape == expected + (4,)
    y = net.forward(np.zeros((2,) + size + (3,), dtype=np.float32))
    assert y.shape == (2,) + expected + (4,)


def naive_conv_transpose(x, kernel, bias, stride, pads, out_shape):
    """Scatter every input pixel times the kernel into the (padded) output, one pixel at a time."""
    n, h, w, _ = x.shape
    kh, kw, filters, _ = kernel.shape
    (top, bottom), (left, right) = pads
    full = np.zeros((n, out_shape[0] + top + bottom, out_shape[1] + left + right, filters))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for a in range(kh):
                    for c in range(kw):
                        full[b, i * stride[0] + a, j * stride[1] + c] += kernel[a, c] @ x[b, i, j]
    return full[:, top:top + out_shape[0], left:left + out_shape[1]] + bias


# Cropping of the full scatter output, written out by hand: "same" crops max(k - s, 0) cells, the
# smaller half first (TensorFlow's split); explicit padding crops what it says.
@pytest.mark.parametrize("kernel, stride, padding, crop, out", [
    ((3, 2), (2, 2), "valid", ((0, 0), (0, 0)), (9, 6)),
    ((3, 4), (2, 3), "same", ((0, 1), (0, 1)), (8, 9)),
    ((5, 4), (2, 1), "same", ((1, 2), (1, 2)), (8, 3)),
    (2, 3, "valid", ((0, 0), (0, 0)), (12, 9)),
    (4, 2, ((1, 2), (0, 1)), ((1, 2), (0, 1)), (7, 7)),
])
def test_conv_transpose_forward_matches_naive_scatter(kernel, stride, padding, crop, out):
    rng = np.random.default_rng(3)
    layer = Conv2DTranspose(3, kernel, stride, padding, bias_initializer="glorot_uniform")
    Net(input_shape=(4, 3, 2), dtype="float64", seed=1).add(layer)
    assert layer.output_shape == out + (3,)
    x = rng.standard_normal((2, 4, 3, 2))
    expected = naive_conv_transpose(x, layer.params["kernel"], layer.params["bias"], layer.stride,
                                    crop, out)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel, stride, padding", [
    ((3, 2), 2, "same"), ((4, 1), (2, 3), "same"), ((3, 2), 2, "valid"), (2, 3, "valid")])
def test_conv_transpose_is_the_adjoint_of_convolution(kernel, stride, padding):
    """<T(x), y> == <x, conv(y)> for the Convolutional layer with the same kernel, stride and padding."""
    rng = np.random.default_rng(5)
    layer = Conv2DTranspose(4, kernel, stride, padding, use_bias=False)
    Net(input_shape=(5, 3, 3), dtype="float64", seed=0).add(layer)
    conv = Convolutional(3, kernel, stride, padding, use_bias=False)
    Net(input_shape=layer.output_shape, dtype="float64").add(conv)
    assert conv.output_shape == (5, 3, 3)
    conv.params["kernel"][...] = layer.params["kernel"]   # (kh, kw, filters, C): conv from F to C
    x = rng.standard_normal((2, 5, 3, 3))
    y = rng.standard_normal((2,) + layer.output_shape)
    assert np.isclose(np.sum(layer.forward(x) * y), np.sum(x * conv.forward(y)), rtol=1e-12)


def test_conv_transpose_keeps_float32_and_kernel_layout():
    layer = Conv2DTranspose(5, kernel_size=(3, 2), strides=2, padding="same", activation="relu")
    net = Net(input_shape=(4, 4, 3))
    net.add(layer)
    assert layer.params["kernel"].shape == (3, 2, 5, 3)      # (kh, kw, filters, in), as in Keras
    assert layer.count_params() == 3 * 2 * 5 * 3 + 5
    y = net.forward(np.ones((2, 4, 4, 3), dtype=np.float32))
    assert y.dtype == np.float32 and y.min() >= 0
    assert net.backward(np.ones_like(y)).dtype == np.float32


def test_conv_transpose_config_round_trip_and_errors():
    layer = Conv2DTranspose(4, (3, 2), (2, 1), "same", activation="leakyrelu", alpha=0.1, use_bias=False)
    config = json.loads(json.dumps(layer.get_config()))
    clone = Conv2DTranspose.from_config(config)
    assert clone.get_config() == config
    assert clone.activation.alpha == 0.1 and clone.filter_size == (3, 2) and clone.pad == "same"
    with pytest.raises(ValueError, match="filters"):
        Conv2DTranspose(0)
    with pytest.raises(ValueError, match="disagree"):
        Conv2DTranspose(2, filter_size=3, kernel_size=2)
    with pytest.raises(ValueError, match="no output"):
        Net(input_shape=(2, 2, 1)).add(Conv2DTranspose(2, 3, 1, pad=3))
    with pytest.raises(ValueError, match="rank 3"):
        Net(input_shape=(5, 1)).add(Conv2DTranspose(2))


# -- UpSampling ------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, shape, batch", [
    (lambda: UpSampling2D((2, 3)), (3, 2, 2), 2),
    (lambda: UpSampling2D(size=3), (2, 3, 1), 1),
    (lambda: UpSampling1D(3), (4, 2), 2),
    (lambda: UpSampling3D((1, 2, 3)), (2, 2, 2, 1), 1),
])
def test_upsampling_gradients(make, shape, batch):
    errors = gradcheck(make(), input_shape=shape, batch_size=batch, tolerance=TOL)
    assert set(errors) == {"input"}


def test_upsampling2d_matches_repeat_and_sums_blocks():
    layer = UpSampling2D((2, 3))
    Net(input_shape=(3, 4, 2)).add(layer)
    x = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    y = layer.forward(x)
    assert layer.output_shape == (6, 12, 2) and y.dtype == np.float32
    np.testing.assert_array_equal(y, np.repeat(np.repeat(x, 2, axis=1), 3, axis=2))
    dy = np.arange(y.size, dtype=np.float32).reshape(y.shape)
    dx = layer.backward(dy)
    # Input pixel (1, 2) of sample 1, channel 0 feeds output rows 2..3 and columns 6..8.
    assert dx[1, 1, 2, 0] == dy[1, 2:4, 6:9, 0].sum()
    assert UpSampling2D.from_config(layer.get_config()).size == (2, 3)
    with pytest.raises(ValueError, match="'nearest', 'bilinear'"):  # bilinear: tests/test_keras_layers.py
        UpSampling2D(interpolation="bicubic")


# -- Residual --------------------------------------------------------------------------------------

def identity_block():
    return Residual(conv_bn(3) + [Activation("relu"), Convolutional(3, 3, pad="same", use_bias=False),
                                  BatchNormalization()])


def projection_block(shortcut="projection_bn"):
    return Residual(conv_bn(4, stride=2) + [Activation("relu")] + conv_bn(4), shortcut=shortcut)


@pytest.mark.parametrize("make, shape, batch, shortcut_names", [
    (identity_block, (5, 4, 3), 3, []),
    (projection_block, (5, 6, 2), 3, ["shortcut_convolutional", "shortcut_batch_normalization"]),
    (lambda: projection_block("projection"), (7, 4, 2), 2, ["shortcut_convolutional"]),
    (lambda: Residual([Dense(4, activation="tanh"), Dropout(0.3), Dense(3)]), (5,), 3,
     ["shortcut_dense"]),
])
def test_residual_gradients_training_mode(make, shape, batch, shortcut_names):
    block = make()
    errors = gradcheck(block, input_shape=shape, batch_size=batch, tolerance=TOL)
    assert [layer.name for layer in block.shortcut_layers] == shortcut_names
    assert set(errors) == {"input"} | set(block.trainable_params)
    assert all(f"{name}/kernel" in errors for name in shortcut_names if "batch" not in name)


def test_residual_forward_is_shortcut_plus_block():
    block = projection_block("projection")
    Net(input_shape=(7, 5, 2), dtype="float64", seed=0).add(block)
    x = np.random.default_rng(0).standard_normal((3, 7, 5, 2))
    h = x
    for layer in block.block:
        h = layer.forward(h, training=False)
    conv = block.shortcut_layers[0]
    assert conv.stride == (2, 2) and conv.filter_size == (1, 1) and conv.activation.name == "linear"
    # A 1x1 stride-2 convolution is a matrix product on every other pixel.
    s = x[:, ::2, ::2] @ conv.params["kernel"][0, 0] + conv.params["bias"]
    np.testing.assert_allclose(block.forward(x), h + s, rtol=1e-12)


def test_residual_projection_stride_matches_valid_block():
    # A 3x3 stride-2 valid convolution maps 7 -> 3 and 10 -> 4: both need a stride-3 projection
    # ((7 - 1) // 3 + 1 = 3, (10 - 1) // 3 + 1 = 4); stride 2 would give 4 and 5.
    block = Residual([Convolutional(3, 3, 2, "valid")])
    Net(input_shape=(7, 10, 2)).add(block)
    assert block.output_shape == (3, 4, 3)
    assert block.shortcut_layers[0].stride == (3, 3)
    block = Residual([Convolutional(3, 3, (2, 1), "same")])
    Net(input_shape=(7, 10, 2)).add(block)
    assert block.shortcut_layers[0].stride == (2, 1)
    # 9 -> 4 (3x3 stride 2 valid) has no 1x1 stride: (9 - 1) // s + 1 is 5 for s = 2 and 3 for s = 3.
    with pytest.raises(ValueError, match=r"no 1x1 projection.*\(7, 9, 2\).*\(3, 4, 3\)"):
        Net(input_shape=(7, 9, 2)).add(Residual([Convolutional(3, 3, 2, "valid")]))


def test_residual_in_a_net_gradients_and_names():
    net = Net(input_shape=(6, 5, 2), dtype="float64", seed=2)
    net.add(Convolutional(3, 3, pad="same", activation="relu"))
    net.add(identity_block())
    net.add(Activation("relu"))
    net.add(projection_block())
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    errors = gradcheck(net, batch_size=2, tolerance=TOL)
    assert "residual_1/shortcut_convolutional/kernel" in errors
    assert "residual/batch_normalization_1/gamma" in errors
    assert "residual/batch_normalization/moving_mean" not in errors
    block = net.get_layer("residual")
    assert [layer.name for layer in block.block] == [
        "convolutional", "batch_normalization", "activation", "convolutional_1", "batch_normalization_1"]
    # params holds all state (moving statistics too) and count_params counts it.
    assert "batch_normalization/moving_variance" in block.params
    assert block.count_params() == 3 * 3 * 3 * 3 * 2 + 4 * 3 * 2
    assert block.count_trainable_params() == 3 * 3 * 3 * 3 * 2 + 2 * 3 * 2


def test_residual_first_layer_skips_input_gradient():
    net = Net(input_shape=(5, 4, 3), dtype="float64", seed=0)
    net.add(identity_block())
    net.add(Flatten())
    net.add(Dense(2))
    x = np.random.default_rng(1).standard_normal((2, 5, 4, 3))
    dy = np.ones((2, 2))
    net.forward(x, training=True)
    assert net.backward(dy).shape == x.shape
    grads = {k: v.copy() for k, v in net.trainable_grads().items()}
    net.forward(x, training=True)
    assert net.backward(dy, input_gradient=False) is None
    for key, value in net.trainable_grads().items():
        np.testing.assert_allclose(value, grads[key], rtol=1e-12)
    assert net.layers[0].block[0].input_grad_needed


def test_residual_config_round_trip():
    custom = Residual([Convolutional(4, 3, 2, "same"), Activation("relu")],
                      shortcut=[MaxPooling(2, 2, "same"), Convolutional(4, 1)])
    net = Net(input_shape=(7, 6, 2), seed=0)
    net.add(identity_block())
    net.add(projection_block())
    net.add(custom)
    config = json.loads(json.dumps(net.get_config()))
    clone = Net.from_config(config)
    assert clone.get_config() == config
    assert config["layers"][1]["config"]["shortcut"] == "projection_bn"
    assert [entry["class_name"] for entry in config["layers"][2]["config"]["shortcut"]] == [
        "MaxPooling", "Convolutional"]
    assert clone.layers[2].shortcut_layers[0].name == "shortcut_max_pooling"
    assert clone.count_params() == net.count_params()
    clone.set_weights(net.get_weights())
    x = np.random.default_rng(0).standard_normal((2, 7, 6, 2)).astype(np.float32)
    np.testing.assert_array_equal(clone.forward(x), net.forward(x))
    assert get_layer_class("Residual") is Residual


def test_residual_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(4, 4, 2\).*\(8, 8, 2\)"):
        Net(input_shape=(4, 4, 2)).add(Residual([UpSampling2D(2)]))
    with pytest.raises(ValueError, match=r"identity shortcut.*\(4, 4, 2\) to \(4, 4, 3\)"):
        Net(input_shape=(4, 4, 2)).add(Residual([Conv2D(3, 3, padding="same")], shortcut="identity"))
    with pytest.raises(ValueError, match=r"shortcut maps \(4, 4, 2\) to \(4, 4, 2\)"):
        Net(input_shape=(4, 4, 2)).add(Residual([Conv2D(3, 1)], shortcut=[Activation("relu")]))
    with pytest.raises(ValueError, match="non-empty list"):
        Residual([])
    with pytest.raises(ValueError, match="shortcut must be"):
        Residual([Dense(2)], shortcut="bottleneck")
    with pytest.raises(ValueError, match="block"):
        Net(input_shape=(2, 2, 1)).add(Residual([Conv2D(1, 3)]))


def test_residual_keeps_float32():
    net = Net(input_shape=(6, 6, 2))
    net.add(projection_block())
    x = np.ones((2, 6, 6, 2), dtype=np.float32)
    y = net.forward(x, training=True)
    assert y.dtype == np.float32
    assert net.backward(np.ones_like(y)).dtype == np.float32
    assert all(v.dtype == np.float32 for v in net.layers[0].params.values())


# -- trainable switches ----------------------------------------------------------------------------

def small_data(seed=0, n=64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6, 6, 2)).astype(np.float32)
    return x, (x[:, :3].sum(axis=(1, 2, 3)) > 0).astype(np.int64)


def snapshot(net):
    return {key: value.copy() for layer in net.layers for key, value in
            ((f"{layer.name}/{k}", v) for k, v in layer.params.items())}


def test_frozen_layer_is_unchanged_by_fit_while_others_change():
    net = Net(input_shape=(6, 6, 2), seed=0)
    net.add(Convolutional(4, 3, activation="relu"))
    net.add(Flatten())
    net.add(Dense(8, activation="relu", trainable=False))
    net.add(Dense(2, activation="softmax"))
    before = snapshot(net)
    net.fit(*small_data(), epochs=2, batch_size=16, verbose=0)
    after = snapshot(net)
    assert all(np.array_equal(before[k], after[k]) for k in ("dense/kernel", "dense/bias"))
    assert not np.array_equal(before["convolutional/kernel"], after["convolutional/kernel"])
    assert not np.array_equal(before["dense_1/kernel"], after["dense_1/kernel"])
    assert set(net.trainable_params()) == {"convolutional/kernel", "convolutional/bias",
                                           "dense_1/kernel", "dense_1/bias"}
    text = []
    net.summary(print_fn=text.append)
    rows = {line.split()[0]: line.split()[-1] for line in text[0].splitlines()
            if line.startswith(("convolutional", "dense"))}
    assert rows == {"convolutional": "yes", "dense": "no", "dense_1": "yes"}
    frozen = 64 * 8 + 8   # the frozen Dense(8) after a Flatten of 4 * 4 * 4 = 64 features
    assert f"Non-trainable params: {frozen:,}" in text[0]


def test_frozen_inner_layer_and_frozen_residual():
    net = Net(input_shape=(6, 6, 2), seed=1)
    block = Residual([Convolutional(2, 3, pad="same", trainable=False), Activation("relu"),
                      Convolutional(2, 3, pad="same")])
    net.add(block)
    net.add(Flatten())
    net.add(Dense(2, activation="softmax"))
    assert set(block.trainable_params) == {"convolutional_1/kernel", "convolutional_1/bias"}
    before = snapshot(net)
    net.fit(*small_data(1), epochs=1, batch_size=16, verbose=0)
    after = snapshot(net)
    assert np.array_equal(before["residual/convolutional/kernel"], after["residual/convolutional/kernel"])
    assert not np.array_equal(before["residual/convolutional_1/kernel"],
                              after["residual/convolutional_1/kernel"])

    block.trainable = False
    assert block.trainable_params == {} and net.count_params(trainable_only=True) == 2 * 72 + 2
    text = []
    net.summary(print_fn=text.append)
    assert any(line.startswith("residual") and line.split()[-1] == "no" for line in text[0].splitlines())
    before = snapshot(net)
    net.fit(*small_data(2), epochs=1, batch_size=16, verbose=0)
    after = snapshot(net)
    assert all(np.array_equal(before[k], after[k]) for k in before if k.startswith("residual/"))
    assert not np.array_equal(before["dense/kernel"], after["dense/kernel"])


def test_frozen_net_changes_nothing():
    net = Net(input_shape=(6, 6, 2), seed=3)
    net.add(Convolutional(2, 3))
    net.add(Flatten())
    net.add(Dense(2, activation="softmax"))
    net.trainable = False
    assert net.trainable_params() == {} and net.count_params(trainable_only=True) == 0
    before = snapshot(net)
    net.fit(*small_data(3), epochs=1, batch_size=16, verbose=0)
    assert all(np.array_equal(value, snapshot(net)[key]) for key, value in before.items())
    text = []
    net.summary(print_fn=text.append)
    assert "Trainable params: 0" in text[0]


# -- a generator in a Net --------------------------------------------------------------------------

def test_generator_net_gradients():
    net = Net(input_shape=(4,), dtype="float64", seed=4)
    net.add(Dense(2 * 3 * 2))
    net.add(Reshape((2, 3, 2)))
    net.add(Conv2DTranspose(3, (3, 2), 2, "same", activation="relu"))
    net.add(UpSampling2D((1, 2)))
    net.add(Convolutional(1, 3, pad="same", activation="tanh"))
    assert net.output_shape == (4, 12, 1)
    gradcheck(net, batch_size=2, tolerance=TOL)
