"""Net: building, shape inference, summary, errors at add(), forward/backward, config round trips."""

import json

import numpy as np
import pytest

import modularcnn.layers.convolutional
from modularcnn import Net, models
from modularcnn.layers import (
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Convolutional,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    MaxPooling,
    MaxPooling2D,
    Reshape,
    registered_layers,
)


def lenet():
    return models.lenet5(seed=0)  # conv 6@5x5 pad 2, pool, conv 16@5x5, pool, dense 120, 84, 10


def test_lenet5_parameter_count_and_shapes():
    net = lenet()
    assert net.count_params() == 61_706
    assert [layer.output_shape for layer in net.layers] == [
        (28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (400,), (120,), (84,), (10,)]
    assert net.output_shape == (10,)


def test_keras_mnist_cnn_parameter_count():
    net = Net(seed=0)
    net.add(Conv2D(32, kernel_size=(3, 3), padding="same", activation="relu", input_shape=(28, 28, 1)))
    net.add(MaxPooling2D(pool_size=(2, 2)))
    net.add(Conv2D(64, kernel_size=3, padding="same", activation="relu"))
    net.add(MaxPool2D())
    net.add(Flatten())
    net.add(Dense(128, activation="relu"))
    net.add(Dense(10, activation="softmax"))
    # 320 + 18,496 + 401,536 + 1,290 (the same numbers Keras prints for this model)
    assert [layer.count_params() for layer in net.layers] == [320, 0, 18_496, 0, 0, 401_536, 1_290]


def test_seed_example_builds_and_prints_summary(capsys):
    model = Net()
    model.add(Convolutional(input_shape=(32, 32, 3), filters=16, filter_size=3, stride=1, pad=1))
    model.summary()
    text = capsys.readouterr().out
    assert "convolutional" in text and "Convolutional" in text
    assert "(None, 32, 32, 16)" in text
    assert "448" in text  # 3*3*3*16 + 16
    assert "Total params: 448" in text and "Trainable params: 448" in text
    assert "Non-trainable params: 0" in text


def test_summary_splits_trainable_and_non_trainable(capsys):
    net = Net(input_shape=(8,))
    net.add(Dense(4))
    net.add(BatchNormalization())
    net.summary()
    text = capsys.readouterr().out
    assert "Total params: 52" in text            # 36 + 16
    assert "Trainable params: 44" in text        # 36 + gamma, beta
    assert "Non-trainable params: 8" in text     # moving mean and variance
    net.layers[0].trainable = False
    net.summary()
    text = capsys.readouterr().out
    assert "Trainable params: 8" in text and "Trainable" in text.splitlines()[2]


def test_names_are_unique_and_keras_like():
    net = Net(input_shape=(4,))
    names = [net.add(Dense(3)).name, net.add(Dense(3)).name, net.add(Activation("relu")).name]
    assert names == ["dense", "dense_1", "activation"]
    with pytest.raises(ValueError, match="already"):
        net.add(Dense(2, name="dense"))


@pytest.mark.parametrize("build, message", [
    (lambda n: n.add(Convolutional(4, 7)), r"conv.*\(5, 5, 1\).*7"),
    (lambda n: n.add(Convolutional(4, 3, pad=1)) and n.add(MaxPooling(6)), r"max_pooling.*6"),
    (lambda n: n.add(Flatten()) and n.add(Dense(10, 3)), r"units_in=10.*25"),
    (lambda n: n.add(Dense(5, 3)), r"units_in=5.*gives 1.*Flatten"),
    (lambda n: n.add(Dense(3, activation="relux")), r"relux.*valid names.*relu"),
    (lambda n: n.add(Dense(3, kernel_initializer="he")), r"'he'.*valid names.*he_normal"),
    (lambda n: n.add(Convolutional(2, 3, input_shape=(9, 9, 1))), r"\(9, 9, 1\).*\(5, 5, 1\)"),
])
def test_impossible_layers_fail_at_add(build, message):
    net = Net(input_shape=(5, 5, 1))
    with pytest.raises(ValueError, match=message):
        build(net)


def test_first_layer_needs_an_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        Net().add(Dense(3))


def test_forward_backward_shapes_and_dtype():
    net = lenet()
    x = np.random.default_rng(0).random((3, 28, 28)).astype(np.float64)  # grayscale without channel axis
    y = net.forward(x)
    assert y.shape == (3, 10) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-5)
    dx = net.backward(np.ones_like(y))
    assert dx.shape == (3, 28, 28, 1) and dx.dtype == np.float32
    assert all(layer.grads[k].dtype == np.float32 for layer in net.layers for k in layer.grads)


def test_forward_rejects_wrong_shapes_and_types():
    net = lenet()
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 28, 28, 1\), got \(2, 28, 27, 1\)"):
        net.forward(np.zeros((2, 28, 27, 1)))
    with pytest.raises(ValueError, match="numeric"):
        net.forward(np.array([["a"]]))


def test_same_seed_same_weights_and_different_seed_differs():
    a, b, c = lenet(), lenet(), Net(input_shape=(28, 28, 1), seed=1)
    c.add(Convolutional(6, 5, pad=2, activation="relu"))
    for la, lb in zip(a.layers, b.layers):
        for key in la.params:
            np.testing.assert_array_equal(la.params[key], lb.params[key])
    assert not np.array_equal(a.layers[0].params["kernel"], c.layers[0].params["kernel"])


def test_dropout_is_identity_at_inference_and_scaled_in_training():
    net = Net(input_shape=(1000,), seed=0)
    net.add(Dropout(0.25))
    x = np.ones((4, 1000), dtype=np.float32)
    np.testing.assert_array_equal(net.forward(x), x)
    y = net.forward(x, training=True)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.03


def test_batchnorm_training_normalises_and_updates_moving_statistics():
    net = Net(input_shape=(3,))
    bn = net.add(BatchNormalization(momentum=0.9, epsilon=1e-5))
    x = np.random.default_rng(0).normal(5.0, 2.0, size=(256, 3)).astype(np.float32)
    y = net.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=0), 1, atol=1e-3)
    np.testing.assert_allclose(bn.params["moving_mean"], 0.1 * x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.params["moving_variance"], 0.9 + 0.1 * x.var(axis=0), rtol=1e-5)
    assert set(bn.trainable_params) == {"gamma", "beta"}


def test_config_round_trip_rebuilds_identical_architecture():
    net = Net(input_shape=(16, 12, 3), name="demo", seed=4)
    net.add(Convolutional(8, (3, 5), stride=(2, 1), pad="same", activation="leakyrelu"))
    net.add(AveragePooling2D(3, 2))
    net.add(BatchNormalization())
    net.add(Reshape((-1,)))
    net.add(Dropout(0.3))
    net.add(Dense(5, activation="elu"))
    config = json.loads(json.dumps(net.get_config()))
    clone = Net.from_config(config)
    assert clone.get_config() == net.get_config()
    assert [layer.name for layer in clone.layers] == [layer.name for layer in net.layers]
    assert clone.count_params() == net.count_params()


@pytest.mark.parametrize("class_name", sorted(registered_layers()))
def test_every_registered_layer_config_round_trips(class_name):
    layer_class = registered_layers()[class_name]
    args = {"Dense": {"units": 3}, "Activation": {"activation": "tanh"}, "Dropout": {"rate": 0.2},
            "Reshape": {"target_shape": (2, 3)}, "Residual": {"layers": [Dense(3)]},
            "InputLayer": {"shape": (3,)}, "Dot": {"axes": 1},
            "NestedModel": {"model": Net(input_shape=(4,), layers=[Dense(3)])},
            "Permute": {"dims": (2, 1)}, "Rescaling": {"scale": 0.5}, "GaussianNoise": {"stddev": 0.1}, "GaussianDropout": {"rate": 0.1}}
    if class_name.startswith("SpatialDropout"):
        kwargs = {"rate": 0.2}
    elif class_name.startswith("Depthwise"):
        kwargs = {"kernel_size": 3}
    elif class_name.startswith("Separable"):
        kwargs = {"filters": 2, "kernel_size": 3}
    else:
        kwargs = {"filters": 2} if "Conv" in class_name else args.get(class_name, {})
    layer = layer_class(**kwargs, name="x")
    config = json.loads(json.dumps(layer.get_config()))
    assert layer_class.from_config(config).get_config() == config


def test_keras_and_seed_argument_names_agree():
    seed = Convolutional(filters=4, filter_size=(3, 2), stride=2, pad="same")
    keras = Conv2D(4, kernel_size=(3, 2), strides=2, padding="same")
    assert (seed.filter_size, seed.stride, seed.pad) == (keras.filter_size, keras.stride, keras.pad)
    with pytest.raises(ValueError, match="disagree"):
        Convolutional(4, filter_size=3, kernel_size=5)


def test_summary_lists_residual_inner_layers_indented(capsys):
    from modularcnn.layers import Residual

    net = Net(input_shape=(8, 8, 4))
    net.add(Residual([Convolutional(4, 3, pad=1), BatchNormalization()]))
    net.summary()  # Keras's default: nested layers are not expanded
    folded = capsys.readouterr().out
    assert "└" not in folded and "Total params: 164" in folded
    net.summary(expand_nested=True)
    lines = capsys.readouterr().out.splitlines()
    residual_row = next(i for i, line in enumerate(lines) if line.startswith("residual"))
    assert lines[residual_row + 1].startswith("└ convolutional")
    assert lines[residual_row + 2].startswith("└ batch_normalization")
    assert "Total params: 164" in "\n".join(lines)  # 148 + 16, inner rows not counted twice


def test_convolution_slices_large_inference_batches_with_the_same_results(monkeypatch):
    net = Net(input_shape=(9, 7, 2), dtype="float64", seed=1)
    net.add(Convolutional(3, 3, stride=2, pad=1, activation="relu"))   # stride 2: never fused
    net.add(Flatten())
    net.add(Dense(4, activation="softmax"))
    x = np.random.default_rng(0).standard_normal((7, 9, 7, 2))
    whole = net.forward(x)
    dx = net.backward(np.ones_like(whole))
    grads = {key: g.copy() for key, g in net.layers[0].grads.items()}
    conv = net.layers[0]
    calls = []
    original = modularcnn.layers.convolutional.conv_forward
    monkeypatch.setattr(modularcnn.layers.convolutional, "conv_forward",
                        lambda x, *args: calls.append(len(x)) or original(x, *args))
    # Three samples' windows per slice: 7 samples go as 3 + 3 + 1.
    window_bytes = 5 * 4 * 3 * 3 * 2 * 8
    monkeypatch.setattr(Convolutional, "INFERENCE_WINDOW_BYTES", 3 * window_bytes)
    np.testing.assert_allclose(net.forward(x), whole, rtol=1e-12)
    assert calls == [3, 3, 1]
    # A backward pass after a sliced inference pass rebuilds the whole batch's windows.
    np.testing.assert_allclose(net.backward(np.ones_like(whole)), dx, rtol=1e-12)
    for key, g in conv.grads.items():
        np.testing.assert_allclose(g, grads[key], rtol=1e-12)
