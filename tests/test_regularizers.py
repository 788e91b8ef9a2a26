"""Weight and activity regularizers, and weight constraints: values, gradients, steps, configs, files.

Oracles: penalties against naive sums written here; gradients of the *total* loss (data loss + activity
penalties / N + weight penalties) against float64 centred finite differences; constraints after one SGD
step against the step written out by hand; two workers against one process; real Keras (optional).
"""

import numpy as np
import pytest

from modularcnn import Net, constraints, regularizers
from modularcnn.gradcheck import numerical_gradient
from modularcnn.layers import (
    Conv2D,
    Conv2DTranspose,
    Dense,
    DepthwiseConv2D,
    Flatten,
    PReLU,
    SeparableConv2D,
)
from modularcnn.optimizers import SGD
from modularcnn.training.loop import objective_of
from modularcnn.training.objective import forward_with_penalties
from modularcnn.training.penalties import weight_penalty, with_penalty_gradients
from modularcnn.regularizers import L1, L1L2, L2
from modularcnn.constraints import MaxNorm, MinMaxNorm, NonNeg, UnitNorm

RNG = np.random.default_rng(7)


# -- the penalties and their registry -----------------------------------------------------------------

def test_penalties_equal_naive_sums_and_their_gradients_match_finite_differences():
    x = RNG.standard_normal((3, 4, 2))
    x[0, 0, 0] = 0.0  # L1's derivative at 0 is 0, as PyTorch's and Keras's
    cases = [(L1(0.3), 0.3 * sum(abs(v) for v in x.ravel())),
             (L2(0.2), 0.2 * sum(v * v for v in x.ravel())),
             (L1L2(0.1, 0.05), 0.1 * sum(abs(v) for v in x.ravel()) + 0.05 * sum(v * v for v in x.ravel()))]
    for regularizer, naive in cases:
        assert regularizer(x) == pytest.approx(naive, rel=1e-13)
        grad = regularizer.gradient(x)
        assert grad.shape == x.shape and grad.dtype == x.dtype
        smooth = x.copy()
        smooth[0, 0, 0] = 0.5  # away from L1's kink for the finite differences
        numeric = numerical_gradient(lambda: regularizer(smooth), smooth)
        np.testing.assert_allclose(regularizer.gradient(smooth), numeric, rtol=1e-7, atol=1e-9)
    assert L1(0.3).gradient(x)[0, 0, 0] == 0.0
    assert L2().gradient(x.astype(np.float32)).dtype == np.float32


def test_names_objects_aliases_and_configs_as_in_keras():
    assert regularizers.get("l2") == L2(0.01)
    assert regularizers.get("l1") == L1(0.01)
    # Keras documents 'l1_l2' as both factors 0.01; its class (and lowercase alias) defaults to 0.
    assert regularizers.get("l1_l2") == L1L2(0.01, 0.01)
    assert regularizers.get("L1L2") == L1L2(0.0, 0.0) == regularizers.l1_l2()
    assert regularizers.get(L2) == L2() and regularizers.l2(1e-4) == L2(1e-4)
    assert regularizers.get(None) is None
    keras3 = {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.03},
              "registered_name": None}
    assert regularizers.get(keras3) == L2(0.03)
    assert regularizers.get({"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.5}}) == L1L2(0, 0.5)
    for regularizer in (L1(0.2), L2(0.4), L1L2(0.1, 0.3)):
        assert regularizers.get(regularizers.serialize(regularizer)) == regularizer
    assert constraints.get("max_norm") == MaxNorm(2, 0)
    assert constraints.get("non_neg") == NonNeg() and constraints.get("NonNeg") == NonNeg()
    assert constraints.get("unit_norm") == UnitNorm(0)
    assert constraints.get("min_max_norm") == MinMaxNorm(0.0, 1.0, 1.0, 0)
    keras_max = {"module": "keras.constraints", "class_name": "MaxNorm",
                 "config": {"max_value": 3, "axis": [0, 1, 2]}, "registered_name": None}
    assert constraints.get(keras_max) == MaxNorm(3, [0, 1, 2])
    for constraint in (MaxNorm(1.5, [0, 1]), NonNeg(), UnitNorm(1), MinMaxNorm(0.5, 2.0, 0.7, 0)):
        assert constraints.get(constraints.serialize(constraint)) == constraint


def test_custom_regularizers_and_constraints_by_pair_subclass_and_registry():
    def penalty(w):
        return 0.5 * float(np.sum(w ** 4))

    def gradient(w):
        return 2.0 * w ** 3

    custom = regularizers.get((penalty, gradient))
    w = RNG.standard_normal((3, 2))
    assert custom(w) == pytest.approx(0.5 * np.sum(w ** 4))
    np.testing.assert_allclose(custom.gradient(w), numerical_gradient(lambda: custom(w), w), rtol=1e-6,
                               atol=1e-8)
    registered = regularizers.register("quartic_test", penalty, gradient)
    assert regularizers.get("quartic_test") is registered
    assert regularizers.get(regularizers.serialize(registered)) is registered

    class Scaled(regularizers.Regularizer):
        def __init__(self, factor=1.0):
            self.factor = factor

        def __call__(self, x):
            return self.factor * float(np.sum(x))

        def gradient(self, x):
            return np.full_like(x, self.factor)

        def get_config(self):
            return {"factor": self.factor}

    regularizers.register("Scaled", Scaled)
    assert regularizers.get(regularizers.serialize(Scaled(3.0))).factor == 3.0

    def halve(w):
        return w / 2

    constraints.register("halve_test", halve)
    assert constraints.get(constraints.serialize(halve)) is halve
    layer = Dense(2, kernel_regularizer="quartic_test", kernel_constraint="halve_test")
    again = Dense.from_config(layer.get_config())
    assert again.kernel_regularizer is registered and again.kernel_constraint is halve


@pytest.mark.parametrize("make, message", [
    (lambda: L2(-0.1), "l2 must be a non-negative number"),
    (lambda: L1(float("nan")), "l1 must be a non-negative number"),
    (lambda: L1L2(l1="0.1"), "l1 must be a non-negative number"),
    (lambda: Dense(3, kernel_regularizer="l3"), "Dense: kernel_regularizer: unknown regularizer 'l3'"),
    (lambda: Dense(3, bias_regularizer=0.01), "Dense: bias_regularizer: expected None, a name"),
    (lambda: Dense(3, kernel_regularizer=np.sum), "bare function"),
    (lambda: Conv2D(3, 3, activity_regularizer=[1]), "Conv2D: activity_regularizer"),
    (lambda: Dense(3, kernel_constraint="max_nrm"), "Dense: kernel_constraint: unknown constraint"),
    (lambda: Dense(3, kernel_constraint=2.0), "Dense: kernel_constraint: expected None"),
    (lambda: MaxNorm(-1), "max_value must be a non-negative number"),
    (lambda: MaxNorm(2, axis="0"), "axis must be an int or a non-empty list of ints"),
    (lambda: MinMaxNorm(2.0, 1.0), "max_value=1.0 is below min_value=2.0"),
    (lambda: MinMaxNorm(rate=1.5), "rate must be a number in [0, 1]"),
    (lambda: DepthwiseConv2D(3, pointwise_regularizer="l2"), "DepthwiseConv2D takes no pointwise_regularizer"),
    (lambda: regularizers.get({"class_name": "L3", "config": {}}), "unknown regularizer class 'L3'"),
    (lambda: regularizers.get({"module": "my.pkg", "class_name": "L2", "config": {}}), "custom object"),
    (lambda: regularizers.get({"class_name": "L2", "config": {"l3": 1}}), "invalid config"),
    (lambda: regularizers.register("l2", np.sum, np.sign), "taken by a built-in"),
])
def test_bad_regularizers_and_constraints_are_refused_clearly(make, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make()


def test_a_refused_option_leaves_the_network_as_it_was():
    net = Net(input_shape=(4,), seed=0)
    net.add(Dense(3))
    with pytest.raises(ValueError, match="kernel_regularizer"):
        net.add(Dense(2, kernel_regularizer="l7"))
    assert len(net.layers) == 1 and net.output_shape == (3,)


def test_a_constraint_on_a_missing_axis_is_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"axis=3 does not exist in weights of shape \(2, 3\)"):
        constraints.project(MaxNorm(1, axis=3), np.ones((2, 3)))


# -- in the loss and its gradient ----------------------------------------------------------------------

def regularized_net():
    """Every layer kind with weights, each with a different penalty; odd shapes, stride 2, padding."""
    net = Net(input_shape=(7, 6, 2), seed=3, dtype="float64")
    net.add(Conv2D(3, (3, 2), strides=2, padding="same", activation="tanh",
                   kernel_regularizer=L2(0.05), bias_regularizer=L1(0.02), bias_initializer="ones",
                   activity_regularizer=L2(0.03)))
    net.add(DepthwiseConv2D(2, depth_multiplier=2, padding="same", activation="tanh",
                            depthwise_regularizer=L1L2(0.01, 0.04), bias_regularizer=L2(0.1),
                            bias_initializer="ones"))
    net.add(SeparableConv2D(3, 2, strides=1, padding="valid", depthwise_regularizer=L2(0.02),
                            pointwise_regularizer=L1(0.03), bias_regularizer="l2",
                            activity_regularizer=L1(0.01), bias_initializer="ones"))
    net.add(Conv2DTranspose(2, 2, strides=2, kernel_regularizer=L2(0.07), activation="tanh",
                            activity_regularizer=L1L2(0.0, 0.02)))
    net.add(PReLU(alpha_initializer="ones", alpha_regularizer=L2(0.2), shared_axes=[1, 2]))
    net.add(Flatten())
    net.add(Dense(3, activation="softmax", kernel_regularizer=L1L2(0.02, 0.01),
                  bias_regularizer=L2(0.3), bias_initializer="ones", activity_regularizer=L2(0.05)))
    net.compile(optimizer=SGD(0.1), loss="categorical_crossentropy", metrics=[])
    return net


def total_loss(net, x, y):
    """Data loss + activity penalties / N + weight penalties, computed here from the parts."""
    objective = objective_of(net)
    outputs, activity = forward_with_penalties(net, x, True)
    value, _, _ = objective.value_and_gradient(outputs, y)
    return value + activity + weight_penalty(net)


@pytest.mark.parametrize("rows", [1, 3])
def test_the_total_loss_gradient_matches_finite_differences(rows):
    net = regularized_net()
    x = RNG.standard_normal((rows, 7, 6, 2))
    y = np.eye(3)[RNG.integers(0, 3, rows)]
    objective = objective_of(net)
    assert objective.mode == "plain"  # the softmax layer has an activity penalty: not fused
    value, _ = objective.backpropagate(x, y)
    params = net.trainable_params()
    grads = with_penalty_gradients(net, params, net.trainable_grads())
    assert value + weight_penalty(net) == pytest.approx(total_loss(net, x, y), rel=1e-12)
    for key, param in params.items():
        numeric = numerical_gradient(lambda: total_loss(net, x, y), param)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-6, atol=1e-8, err_msg=key)


def test_activity_penalties_are_divided_by_the_batch_size_and_reported_in_the_loss():
    net = Net(input_shape=(4,), seed=1, dtype="float64")
    net.add(Dense(5, activation="relu", bias_initializer="ones", activity_regularizer=L2(0.2),
                  kernel_regularizer=L2(0.1)))
    net.add(Dense(3, activation="softmax", kernel_regularizer=L1(0.03)))
    net.compile(optimizer=SGD(0.1), loss="categorical_crossentropy", metrics=[])
    x = RNG.standard_normal((6, 4))
    y = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    w1, b1 = net.layers[0].params["kernel"].copy(), net.layers[0].params["bias"].copy()
    w2, b2 = net.layers[1].params["kernel"].copy(), net.layers[1].params["bias"].copy()
    hidden = np.maximum(x @ w1 + b1, 0)
    logits = hidden @ w2 + b2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    naive = (-np.mean(np.sum(y * np.log(probs), 1)) + 0.2 * np.sum(hidden ** 2) / len(x)
             + 0.1 * np.sum(w1 ** 2) + 0.03 * np.sum(np.abs(w2)))
    assert net.evaluate(x, y, batch_size=6, return_dict=True)["loss"] == pytest.approx(naive, rel=1e-12)
    # Batches of 4 and 2: the activity penalty is each batch's mean, the weight penalty added once.
    assert net.evaluate(x, y, batch_size=4, return_dict=True)["loss"] == pytest.approx(naive, rel=1e-12)
    assert net.train_on_batch(x, y)["loss"] == pytest.approx(naive, rel=1e-12)  # before the step
    # A bare forward pass counts no penalty and the layer keeps no gradient factor from it.
    net.forward(x, training=True)
    assert net.layers[0]._activity_scale is None


def test_fused_softmax_stays_fused_without_an_activity_penalty_on_the_output():
    net = Net(input_shape=(4,), seed=1)
    net.add(Dense(5, activation="relu", activity_regularizer="l2"))
    net.add(Dense(3, activation="softmax", kernel_regularizer="l2"))
    net.compile(loss="categorical_crossentropy")
    assert objective_of(net).mode == "fused"


# -- constraints after the optimizer step --------------------------------------------------------------

def test_constraints_project_after_each_sgd_step_along_keras_axes():
    net = Net(input_shape=(5, 4, 2), seed=2, dtype="float64")
    net.add(Conv2D(3, (2, 3), kernel_constraint=MaxNorm(0.3, axis=[0, 1, 2]),
                   bias_constraint=NonNeg(), bias_initializer="ones", kernel_regularizer=L2(0.1)))
    net.add(Flatten())
    net.add(Dense(3, kernel_constraint=MaxNorm(0.4), bias_constraint=UnitNorm()))
    net.compile(optimizer=SGD(0.5), loss="mse", metrics=[])
    x, y = RNG.standard_normal((4, 5, 4, 2)), RNG.standard_normal((4, 3))
    before = {k: v.copy() for k, v in net.trainable_params().items()}
    objective_of(net).backpropagate(x, y)
    grads = {k: v.copy() for k, v in net.trainable_grads().items()}
    for layer in net.layers:  # put the weights back: train_on_batch repeats the same backward pass
        for key in layer.params:
            layer.params[key][...] = before[f"{layer.name}/{key}"]
    net.train_on_batch(x, y)
    after = net.trainable_params()

    kernel = before["conv2d/kernel"] - 0.5 * (grads["conv2d/kernel"] + 0.2 * before["conv2d/kernel"])
    for f in range(3):  # each filter (kh, kw, C) scaled to norm <= 0.3
        norm = np.sqrt(np.sum(kernel[..., f] ** 2))
        expected = kernel[..., f] * min(norm, 0.3) / (1e-7 + norm)
        np.testing.assert_allclose(after["conv2d/kernel"][..., f], expected, rtol=1e-12)
    bias = before["conv2d/bias"] - 0.5 * grads["conv2d/bias"]
    np.testing.assert_allclose(after["conv2d/bias"], np.maximum(bias, 0), rtol=1e-12)
    dense = before["dense/kernel"] - 0.5 * grads["dense/kernel"]
    for unit in range(3):  # axis 0 of a Dense kernel (in, units): each unit's incoming weights
        norm = np.sqrt(np.sum(dense[:, unit] ** 2))
        np.testing.assert_allclose(after["dense/kernel"][:, unit],
                                   dense[:, unit] * min(norm, 0.4) / (1e-7 + norm), rtol=1e-12)
    dense_bias = before["dense/bias"] - 0.5 * grads["dense/bias"]
    np.testing.assert_allclose(after["dense/bias"], dense_bias / (1e-7 + np.linalg.norm(dense_bias)),
                               rtol=1e-12)


def test_keras_default_axis_zero_on_a_conv_kernel_is_its_first_axis_only():
    kernel = RNG.standard_normal((3, 2, 4, 5))
    projected = MaxNorm(0.5)(kernel)
    for j in range(2):
        for c in range(4):
            for f in range(5):
                column = kernel[:, j, c, f]
                norm = np.sqrt(np.sum(column ** 2))
                np.testing.assert_allclose(projected[:, j, c, f], column * min(norm, 0.5) / (1e-7 + norm),
                                           rtol=1e-12)
    w = RNG.standard_normal((4, 3))
    norms = np.linalg.norm(w, axis=0)
    rated = MinMaxNorm(0.5, 0.8, rate=0.25)(w)
    desired = 0.25 * np.clip(norms, 0.5, 0.8) + 0.75 * norms
    np.testing.assert_allclose(np.linalg.norm(rated, axis=0), desired * norms / (1e-7 + norms), rtol=1e-12)


# -- configs, files, workers -----------------------------------------------------------------------------

def test_configs_and_hdf5_files_keep_regularizers_and_constraints(tmp_path):
    net = regularized_net()
    net.layers[0].kernel_constraint = MaxNorm(1.5, [0, 1, 2])
    net.layers[-1].kernel_constraint = NonNeg()
    for layer in net.layers:
        assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()
    path = tmp_path / "regularized.h5"
    net.save(path)
    from modularcnn import load_model  # noqa: PLC0415

    loaded = load_model(path)
    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in net.layers]
    x = RNG.standard_normal((3, 7, 6, 2))
    y = np.eye(3)[[0, 1, 2]]
    loaded.compile(optimizer=SGD(0.1), loss="categorical_crossentropy", metrics=[])
    assert loaded.evaluate(x, y, return_dict=True)["loss"] == pytest.approx(
        net.evaluate(x, y, return_dict=True)["loss"], rel=1e-12)
    assert loaded.train_on_batch(x, y)["loss"] == pytest.approx(net.train_on_batch(x, y)["loss"],
                                                                rel=1e-12)
    for one, two in zip(net.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(two, one, rtol=1e-12)


def worker_net():
    net = Net(input_shape=(8, 6, 1), seed=4, dtype="float64")
    net.add(Conv2D(3, 3, padding="same", activation="relu", kernel_regularizer=L2(0.05),
                   activity_regularizer=L1(0.01), kernel_constraint=MaxNorm(0.6, [0, 1, 2])))
    net.add(Flatten())
    net.add(Dense(3, activation="softmax", kernel_regularizer=L1L2(0.01, 0.02),
                  bias_constraint=NonNeg(), activity_regularizer=L2(0.01)))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=[])
    return net


def test_two_workers_add_the_penalties_once_and_match_one_process():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 8, 6, 1)), rng.integers(0, 3, 40)
    weights, histories = [], []
    for workers in (1, 2):
        net = worker_net()
        history = net.fit(x, y, epochs=2, batch_size=13, verbose=0, workers=workers, shuffle=False,
                          validation_split=0.2)
        weights.append(net.get_weights())
        histories.append(history.history)
    for one, two in zip(*weights):
        np.testing.assert_allclose(two, one, rtol=1e-10, atol=1e-12)
    for key in histories[0]:
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-10)


# -- the Keras bridge -------------------------------------------------------------------------------------

def test_keras3_and_keras2_regularizer_and_constraint_configs_are_read():
    from modularcnn.saving.keras_layers import layer_from_keras  # noqa: PLC0415

    keras3 = {"name": "d", "units": 4, "activation": "relu",
              "kernel_regularizer": {"module": "keras.regularizers", "class_name": "L2",
                                     "config": {"l2": 0.01}, "registered_name": None},
              "bias_regularizer": {"module": "keras.regularizers", "class_name": "L1L2",
                                   "config": {"l1": 0.1, "l2": 0.2}, "registered_name": None},
              "activity_regularizer": {"module": "keras.regularizers", "class_name": "L1",
                                       "config": {"l1": 0.5}, "registered_name": None},
              "kernel_constraint": {"module": "keras.constraints", "class_name": "MaxNorm",
                                    "config": {"max_value": 2, "axis": 0}, "registered_name": None},
              "bias_constraint": None}
    layer = layer_from_keras("Dense", keras3, 1, "test")
    assert (layer.kernel_regularizer, layer.bias_regularizer, layer.activity_regularizer) == (
        L2(0.01), L1L2(0.1, 0.2), L1(0.5))
    assert layer.kernel_constraint == MaxNorm(2, 0) and layer.bias_constraint is None
    keras2 = {"name": "c", "filters": 2, "kernel_size": [3, 3], "padding": "valid",
              "depthwise_regularizer": None,
              "kernel_regularizer": {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.01}},
              "kernel_constraint": {"class_name": "NonNeg", "config": {}}}
    conv = layer_from_keras("Conv2D", keras2, 3, "test", keras2=True)
    assert conv.kernel_regularizer == L1L2(0.0, 0.01) and conv.kernel_constraint == NonNeg()
    separable = layer_from_keras("SeparableConv2D", {
        "name": "s", "filters": 2, "kernel_size": 3,
        "pointwise_regularizer": {"class_name": "L2", "config": {"l2": 0.3}},
        "depthwise_constraint": {"class_name": "UnitNorm", "config": {"axis": [0, 1]}}}, 3, "test")
    assert separable.pointwise_regularizer == L2(0.3)
    assert separable.depthwise_constraint == UnitNorm([0, 1])
    custom = dict(keras3, kernel_regularizer={"module": "my.package", "class_name": "Mine",
                                              "config": {}, "registered_name": "Mine"})
    with pytest.warns(UserWarning, match="kernel_regularizer.*dropped"):
        assert layer_from_keras("Dense", custom, 1, "test").kernel_regularizer is None


def test_keras3_entries_carry_the_regularizers_and_constraints():
    from modularcnn.saving.keras_layers import keras_layers_of  # noqa: PLC0415

    net = Net(input_shape=(6, 5, 2), seed=0)
    net.add(Conv2D(3, 3, padding=1, activation="leaky_relu", alpha=0.1, kernel_regularizer=L2(0.02),
                   activity_regularizer=L1(0.01), kernel_constraint=MaxNorm(1.0, [0, 1, 2])))
    net.add(Flatten())
    net.add(Dense(2, bias_regularizer=L1L2(0.1, 0.2), bias_constraint="non_neg"))
    padding, conv, leaky = keras_layers_of(net.layers[0])
    assert conv[0] == "Conv2D" and conv[2]
    assert conv[1]["kernel_regularizer"] == {"module": "keras.regularizers", "class_name": "L2",
                                             "config": {"l2": 0.02}, "registered_name": None}
    assert conv[1]["kernel_constraint"]["config"] == {"max_value": 1.0, "axis": [0, 1, 2]}
    # The activity penalty is on the layer's output: after the LeakyReLU Keras writes apart.
    assert "activity_regularizer" not in conv[1] and "activity_regularizer" not in padding[1]
    assert leaky[0] == "LeakyReLU" and leaky[1]["activity_regularizer"]["class_name"] == "L1"
    [(name, config, _)] = keras_layers_of(net.layers[2])
    assert config["bias_regularizer"]["config"] == {"l1": 0.1, "l2": 0.2}
    assert config["bias_constraint"] == {"module": "keras.constraints", "class_name": "NonNeg",
                                         "config": {}, "registered_name": None}


KERAS_STEP = """
import json, os, sys
os.environ.setdefault("KERAS_BACKEND", "torch")
import numpy as np, keras
model = keras.models.load_model(sys.argv[1])
x, y = np.load(sys.argv[2]), np.load(sys.argv[3])
model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
before = model.evaluate(x, y, batch_size=len(x), verbose=0)
step = model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0).history["loss"][0]
after = model.evaluate(x, y, batch_size=len(x), verbose=0)
model.save(sys.argv[4])
with open(sys.argv[5], "w") as out:
    json.dump([before, step, after], out)
"""


def test_keras_gives_the_same_losses_before_during_and_after_an_sgd_step(tmp_path, monkeypatch):
    """Our .keras file opened by real Keras (torch backend): the same penalties in the loss, the same
    step (penalty gradients, constraints after it); and Keras's own file of it read back."""
    import os  # noqa: PLC0415
    import json  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
    pytest.importorskip("keras")
    from modularcnn import load_model  # noqa: PLC0415

    net = Net(input_shape=(7, 6, 2), seed=5)
    net.add(Conv2D(3, 3, padding="same", activation="relu", bias_initializer="ones",
                   kernel_regularizer=L2(0.05), bias_regularizer=L1(0.02),
                   activity_regularizer=L2(0.03), kernel_constraint=MaxNorm(0.3, [0, 1, 2])))
    net.add(SeparableConv2D(4, 2, depth_multiplier=2, activation="tanh",
                            depthwise_regularizer=L1L2(0.01, 0.02), pointwise_regularizer=L2(0.04),
                            depthwise_constraint=UnitNorm([0, 1]), bias_constraint=NonNeg()))
    net.add(Flatten())
    net.add(Dense(3, activation="softmax", kernel_regularizer=L1L2(0.02, 0.01),
                  bias_regularizer=L2(0.3), bias_constraint=NonNeg(),
                  kernel_constraint=MinMaxNorm(0.1, 0.5, 0.5)))
    net.compile(optimizer=SGD(0.1), loss="categorical_crossentropy", metrics=[])
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 7, 6, 2)).astype("float32")
    y = np.eye(3, dtype="float32")[[0, 1, 2, 1, 0]]
    net.save(tmp_path / "ours.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    done = subprocess.run([sys.executable, "-c", KERAS_STEP, str(tmp_path / "ours.keras"),
                           str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
                           str(tmp_path / "theirs.keras"), str(tmp_path / "losses.json")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    keras_losses = json.loads((tmp_path / "losses.json").read_text())
    ours = [net.evaluate(x, y, batch_size=5)["loss"], net.train_on_batch(x, y)["loss"],
            net.evaluate(x, y, batch_size=5)["loss"]]
    np.testing.assert_allclose(ours, keras_losses, rtol=2e-5)
    assert ours[0] > 1.05 * net.loss(y, net.predict(x))  # the penalties are a real part of it
    theirs = load_model(tmp_path / "theirs.keras")
    assert [type(layer) for layer in theirs.layers] == [type(layer) for layer in net.layers]
    for mine, read in zip(net.layers, theirs.layers):
        options = {**mine.weight_options_config(), "activity": regularizers.serialize(
            getattr(mine, "activity_regularizer", None))}
        again = {**read.weight_options_config(), "activity": regularizers.serialize(
            getattr(read, "activity_regularizer", None))}
        assert again.keys() == options.keys()
        for key, entry in options.items():
            assert same_object_config(again[key], entry), (key, again[key], entry)


def same_object_config(read, written):
    """Equal configs, numbers up to float32 rounding (Keras keeps L1's factor in float32)."""
    if read is None or written is None:
        return read is written
    if read["class_name"] != written["class_name"] or read["config"].keys() != written["config"].keys():
        return False
    return all(value == pytest.approx(written["config"][name], rel=1e-6)
               if isinstance(value, float) else value == written["config"][name]
               for name, value in read["config"].items())
