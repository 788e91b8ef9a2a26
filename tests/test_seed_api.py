"""The seed library's API, verbatim: ``from modularcnn import layer, network`` runs seed scripts."""

import math
from pathlib import Path

import numpy as np
import pytest

from modularcnn import Net, gradcheck, layer, layers, load_model, network
from .naive import conv2d

SEED_SCRIPT = Path(__file__).parent / "seed_scripts" / "cifar_example.py"
SEED_IMPORT = "from lib import layer, network"
OUR_IMPORT = "from modularcnn import layer, network"


def test_seed_example_runs_with_only_its_import_line_changed(capsys):
    source = SEED_SCRIPT.read_text()
    ported = source.replace(SEED_IMPORT, OUR_IMPORT)
    changed = [(a, b) for a, b in zip(source.splitlines(), ported.splitlines()) if a != b]
    assert changed == [(SEED_IMPORT, OUR_IMPORT)]
    namespace = {"__name__": "seed_example"}
    exec(compile(ported, str(SEED_SCRIPT), "exec"), namespace)
    cnn, x_test, y_test, y_pred, accuracy = namespace["main"]()

    assert isinstance(cnn, Net) and cnn.output_shape == (10,)
    assert "Total params: 12,538" in capsys.readouterr().out
    # forwardpass on single images agrees with predict on the batch, probabilities and classes.
    probabilities = cnn.predict(x_test)
    one_by_one = np.stack([cnn.forwardpass(image) for image in x_test])
    np.testing.assert_allclose(one_by_one, probabilities, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y_pred, probabilities.argmax(axis=1))
    # Ten colour-coded classes after two epochs of 640 images (85-98% over four unseeded runs): far above guessing.
    assert accuracy > 40


def test_seed_signatures_positionally():
    conv = layer.Convolutional((9, 7, 3), 4, 3, 2, 1, 0.5)
    assert (conv.requested_input_shape, conv.filters, conv.filter_size, conv.stride, conv.pad_value) == (
        (9, 7, 3), 4, (3, 3), (2, 2), 0.5)
    assert conv.pad == ((1, 1), (1, 1))
    assert layer.Convolutional((5, 5, 1)).filters == 1  # the seed's default
    assert layer.MaxPooling((8, 8, 2), 4).pool_size == (4, 4)
    dense = layer.Dense(512, 10)
    assert (dense.units_in, dense.units) == (512, 10)
    assert layer.Activation().activation.name == "relu"
    leaky = layer.Activation("leakyrelu")
    assert leaky.activation.alpha == pytest.approx(0.001)  # the seed's slope, not Keras's 0.3
    assert isinstance(layer.Flatten((4, 4, 32)), layers.Flatten)


def test_keras_layers_accept_the_seed_keywords():
    dense = layers.Dense(units_in=512, units_out=10)
    assert (dense.units_in, dense.units) == (512, 10)
    assert layers.Activation(function="sigmoid").activation.name == "sigmoid"
    assert layers.Activation(None).activation.name == "linear"
    with pytest.raises(ValueError, match="disagree"):
        layers.Activation("relu", function="tanh")
    with pytest.raises(ValueError, match="give the activation"):
        layers.Activation()
    with pytest.raises(ValueError, match="units must be a positive int, got None"):
        layers.Dense(units_in=4)


def test_initial_wvar_draws_the_kernel_with_that_variance():
    net = Net(input_shape=(512,), seed=1)
    dense = net.add(layers.Dense(units_in=512, units_out=40, initial_Wvar=2 / 512))
    kernel = dense.params["kernel"].astype(np.float64)
    # 20,480 draws: the sample variance is within 3% of the asked one, the mean near 0.
    assert kernel.var() == pytest.approx(2 / 512, rel=0.03)
    assert abs(kernel.mean()) < 4 * math.sqrt(2 / 512 / kernel.size)
    assert layer.Dense(8, 3).kernel_initializer.stddev == pytest.approx(0.1)  # seed default 0.01
    for bad in (0, -1.0, float("nan"), "big", True):
        with pytest.raises(ValueError, match="initial_Wvar"):
            layers.Dense(3, initial_Wvar=bad)
    with pytest.raises(ValueError, match="not both"):
        layers.Dense(3, initial_Wvar=0.1, kernel_initializer="zeros")


@pytest.mark.parametrize("stride, pad", [(1, 1), (2, (2, 1)), (1, "same")])
def test_pad_value_matches_a_loop_over_the_padded_input(stride, pad):
    conv = layers.Convolutional(3, (3, 2), stride=stride, pad=pad, pad_value=-0.7)
    conv.dtype = np.dtype(np.float64)
    conv.build((6, 5, 2))
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 2))
    (pt, pb), (pl, pr) = conv.pads
    padded = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-0.7)
    expected = conv2d(padded, conv.params["kernel"], conv.params["bias"], conv.stride, ((0, 0), (0, 0)))
    np.testing.assert_allclose(conv.forward(x), expected, rtol=1e-10)
    np.testing.assert_allclose(conv.forward(x, training=True), expected, rtol=1e-10)


def test_pad_value_gradients_match_finite_differences():
    conv = layers.Convolutional(2, 3, stride=2, pad=(1, 2), pad_value=0.3, activation="tanh")
    errors = gradcheck(conv, input_shape=(7, 6, 3), batch_size=1)
    assert set(errors) == {"input", "kernel", "bias"} and max(errors.values()) < 1e-6


def test_pad_value_is_not_fused_and_survives_config_and_saving(tmp_path):
    net = network.Net(seed=0)
    net.add(layer.Convolutional(input_shape=(8, 8, 1), filters=2, pad=1, pad_value=1.0))
    net.add(layers.Activation("relu"))
    net.add(layer.MaxPooling())
    net.add(layer.Flatten())
    net.add(layer.Dense(32, 3))
    x = np.random.default_rng(2).random((3, 8, 8, 1))
    path = tmp_path / "seed.h5"
    net.save(path)
    loaded = load_model(path)
    assert loaded.get_config() == net.get_config()
    assert loaded.layers[0].pad_value == 1.0 and type(loaded.layers[-1]) is layers.Dense
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    relu_conv = layers.Convolutional(2, pad=1, pad_value=1.0, activation="relu", input_shape=(8, 8, 1))
    unpadded = layers.Convolutional(2, pad=1, activation="relu", input_shape=(8, 8, 1))
    for conv in (relu_conv, unpadded):
        fused = Net(seed=0, layers=[conv, layers.MaxPooling(2)])
        fused.predict(x)
        steps = [type(step).__name__ for step in fused._plan]
        assert (steps == ["Convolutional", "MaxPooling"]) == (conv is relu_conv)


def test_backpass_takes_a_plain_gradient_step():
    net = network.Net(seed=3, dtype="float64")
    net.add(layer.Convolutional(input_shape=(6, 6, 2), filters=3, pad=1))
    net.add(layer.Activation("relu"))
    net.add(layer.Flatten())
    net.add(layer.Dense(108, 4))
    net.add(layer.Activation("softmax"))
    image = np.random.default_rng(4).random((6, 6, 2))
    probabilities = net.forwardpass(image)
    assert probabilities.shape == (4,) and probabilities.sum() == pytest.approx(1)
    target = np.eye(4)[1]
    gradient = -target / probabilities  # the seed's cross-entropy gradient
    net.forward(image[None], training=True)
    net.backward(gradient[None])
    expected = {key: value - 0.05 * net.trainable_grads()[key]
                for key, value in net.trainable_params().items()}
    net.forwardpass(image)
    net.backpass(gradient.reshape(4, 1), learn_rate=0.05)  # the seed's column shape
    for key, value in net.trainable_params().items():
        np.testing.assert_allclose(value, expected[key], rtol=1e-12, err_msg=key)
    assert net.forwardpass(image)[1] > probabilities[1]


def test_forwardpass_and_backpass_refuse_bad_input():
    net = Net(input_shape=(4, 4, 1), layers=[layers.Flatten(), layers.Dense(2)])
    with pytest.raises(ValueError, match=r"one sample of shape \(4, 4, 1\).*predict"):
        net.forwardpass(np.zeros((3, 4, 4, 1)))
    assert net.forwardpass(np.zeros((4, 4))).shape == (2,)  # grayscale without the channel axis
    with pytest.raises(ValueError, match=r"dL_dout of shape \(2,\)"):
        net.backpass(np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="learn_rate"):
        net.backpass(np.zeros(2), -1)
    with pytest.raises(ValueError, match="forward pass"):
        Net(input_shape=(3,), layers=[layers.Dense(2)]).backpass(np.zeros(2), 0.1)
