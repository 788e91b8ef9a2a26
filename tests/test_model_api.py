"""Keras's model methods on Net and Model: Sequential([...]), pop, get_layer, summary options,
evaluate's list, predict options, predict_on_batch, model(x), layer and model weights, to_json /
model_from_json, clone_model."""

import json

import numpy as np
import pytest

import modularcnn as mc
from modularcnn import Input, Model, Net, Sequential, models
from modularcnn.callbacks import Callback
from modularcnn.layers import (BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D, Residual)

RNG = np.random.default_rng(0)


def small_net(seed=1, **kwargs):
    return Sequential([Input((6, 6, 1)), Conv2D(3, 3, activation="relu"), MaxPooling2D(2),
                       Flatten(), Dense(4, activation="softmax")], seed=seed, **kwargs)


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 1)).astype(np.float32), rng.integers(0, 4, n)


# -- Sequential -----------------------------------------------------------------------------------

def test_sequential_is_net_and_takes_a_positional_list_with_an_input_first():
    assert Sequential is Net
    net = small_net(name="cnn")
    assert net.name == "cnn" and net.input_shape == (6, 6, 1)
    assert [type(layer).__name__ for layer in net.layers] == ["Conv2D", "MaxPooling2D", "Flatten",
                                                              "Dense"]
    assert net.output_shape == (4,)
    assert Sequential([]).layers == [] and Sequential(name="empty").name == "empty"
    assert Net((5,)).input_shape == (5,)  # a tuple of ints is still an input shape


def test_sequential_refuses_bad_lists_before_building_anything():
    dense = Dense(2)
    with pytest.raises(ValueError, match="layers"):
        Sequential([Input((3,)), dense, "relu"])
    assert not dense.built
    with pytest.raises(ValueError, match="give one of them"):
        Sequential([Dense(2)], layers=[Dense(2)])
    with pytest.raises(ValueError, match="can only come first"):
        Sequential([Input((3,)), Dense(2), Input((2,))])
    with pytest.raises(ValueError, match="trainable"):
        Sequential([Input((3,)), Dense(2)], trainable="no")


# -- pop, get_layer ---------------------------------------------------------------------------------

def test_pop_removes_the_last_layer_and_training_follows_the_new_stack():
    net = small_net()
    net.compile(loss="sparse_categorical_crossentropy")
    last = net.pop()
    assert isinstance(last, Dense) and net.output_shape == (12,)
    net.add(Dense(4, activation="softmax", name="new_head"))
    x, y = data()
    net.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert net.get_layer(index=-1).name == "new_head"
    assert net.predict(x).shape == (24, 4)


def test_pop_refuses_an_empty_net_and_a_graph():
    with pytest.raises(ValueError, match="has none"):
        Net(input_shape=(3,)).pop()
    x = Input((3,))
    model = Model(x, Dense(2)(x))
    with pytest.raises(ValueError, match="graph Model"):
        model.pop()
    assert len(model.layers) == 2


def test_get_layer_by_name_or_index():
    net = small_net()
    assert net.get_layer(index=0) is net.layers[0]
    assert net.get_layer(index=-1) is net.layers[-1]
    assert net.get_layer("flatten") is net.layers[2]
    assert net.get_layer(name="flatten") is net.layers[2]
    for kwargs, message in (({}, "one of them"), ({"name": "flatten", "index": 0}, "one of them"),
                            ({"index": 4}, "out of range"), ({"index": -5}, "out of range"),
                            ({"index": 1.0}, "must be an int"), ({"index": True}, "must be an int"),
                            ({"name": "nope"}, "no layer named"), ({"name": 3}, "must be a string")):
        with pytest.raises(ValueError, match=message):
            net.get_layer(**kwargs)


# -- summary ------------------------------------------------------------------------------------------

def test_summary_expand_nested_line_length_and_positions():
    net = Net(input_shape=(8, 8, 4), layers=[Residual([Conv2D(4, 3, padding="same")]), Flatten(),
                                             Dense(2, name="a_rather_long_dense_layer_name")])
    folded, expanded, narrow = [], [], []
    net.summary(print_fn=folded.append)
    net.summary(print_fn=expanded.append, expand_nested=True)
    assert "└ conv2d" in expanded[0] and "└" not in folded[0]
    net.summary(print_fn=narrow.append, line_length=60)
    lines = narrow[0].splitlines()
    assert lines[1] == "=" * 60
    assert all(len(line) <= 60 for line in lines)
    assert "a_rather_long_dense_layer_name" not in narrow[0]  # wrapped onto two lines
    positioned = []
    net.summary(print_fn=positioned.append, line_length=80, positions=[0.4, 0.6, 0.85, 1.0])
    assert positioned[0].splitlines()[1] == "=" * 80
    absolute = []
    net.summary(print_fn=absolute.append, positions=[32, 48, 68, 80])
    assert absolute[0].splitlines()[1] == "=" * 80


@pytest.mark.parametrize("kwargs, message", [
    ({"line_length": 10}, "line_length"), ({"line_length": "wide"}, "line_length"),
    ({"positions": [0.5, 1.0]}, "positions"), ({"line_length": 60, "positions": [0.05, 0.5, 0.7, 1]},
                                               "narrower"),
    ({"show_trainable": "yes"}, "show_trainable")])
def test_summary_refuses_bad_layout(kwargs, message):
    printed = []
    with pytest.raises(ValueError, match=message):
        small_net().summary(print_fn=printed.append, **kwargs)
    assert printed == []


# -- evaluate, predict, predict_on_batch, model(x) ------------------------------------------------------

def test_evaluate_returns_a_list_like_keras_and_a_dict_on_request():
    net = small_net()
    net.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy", "top_2_accuracy"])
    x, y = data()
    score = net.evaluate(x, y, verbose=0)
    logs = net.evaluate(x, y, return_dict=True)
    assert net.metrics_names == ["loss", "accuracy", "top_2_accuracy"]
    assert isinstance(score, list) and score == [logs[name] for name in net.metrics_names]
    probs = net.predict(x)
    assert score[0] == pytest.approx(-np.mean(np.log(probs[np.arange(24), y])), rel=1e-5)
    assert score[1] == pytest.approx(np.mean(probs.argmax(1) == y))
    net.compile(loss="sparse_categorical_crossentropy", metrics=[])
    loss = net.evaluate(x, y)
    assert isinstance(loss, float) and loss == pytest.approx(score[0])  # Keras: the loss alone
    with pytest.raises(ValueError, match="return_dict"):
        net.evaluate(x, y, return_dict="yes")


def test_predict_options_predict_on_batch_and_calling_the_model(capsys):
    net = small_net()
    x, _ = data(10)
    expected = net.predict(x)
    np.testing.assert_array_equal(net.predict(x, batch_size=3, verbose=0), expected)
    assert capsys.readouterr().out == ""
    np.testing.assert_array_equal(net.predict(x, verbose=1), expected)
    assert "1/1 batches" in capsys.readouterr().out
    net.predict(x, verbose="auto", batch_size=4)
    assert "3/3 batches" in capsys.readouterr().out
    on_batch = net.predict_on_batch(x)
    np.testing.assert_allclose(on_batch, expected, rtol=1e-6)
    np.testing.assert_allclose(net(x), expected, rtol=1e-6)
    on_batch[:] = 0  # a new array, not a buffer the network reuses
    np.testing.assert_allclose(net.predict_on_batch(x), expected, rtol=1e-6)
    for bad in ({"verbose": 3}, {"verbose": "loud"}, {"batch_size": 0}, {"callbacks": ["cb"]}):
        with pytest.raises(ValueError):
            net.predict(x, **bad)
    with pytest.raises(ValueError, match="expected input"):
        net.predict_on_batch(x[:, :5])


def test_evaluate_and_predict_run_the_test_and_predict_hooks():
    seen = []

    class Recorder(Callback):
        def on_test_begin(self, logs=None): seen.append("test_begin")
        def on_test_batch_begin(self, batch, logs=None): seen.append(f"test_batch_begin {batch}")
        def on_test_batch_end(self, batch, logs=None): seen.append(f"test_batch_end {batch} {sorted(logs)}")
        def on_test_end(self, logs=None): seen.append(f"test_end {sorted(logs)}")
        def on_predict_begin(self, logs=None): seen.append("predict_begin")
        def on_predict_batch_begin(self, batch, logs=None): seen.append(f"predict_batch_begin {batch}")
        def on_predict_batch_end(self, batch, logs=None):
            seen.append(f"predict_batch_end {batch} {logs['outputs'].shape}")
        def on_predict_end(self, logs=None): seen.append("predict_end")

    net = small_net()
    x, y = data(10)
    recorder = Recorder()
    net.evaluate(x, y, batch_size=6, callbacks=[recorder])
    assert recorder.model is net
    assert seen == ["test_begin", "test_batch_begin 0", "test_batch_end 0 ['accuracy', 'loss']",
                    "test_batch_begin 1", "test_batch_end 1 ['accuracy', 'loss']",
                    "test_end ['accuracy', 'loss']"]
    seen.clear()
    net.predict(x, batch_size=6, callbacks=recorder)
    assert seen == ["predict_begin", "predict_batch_begin 0", "predict_batch_end 0 (6, 4)",
                    "predict_batch_begin 1", "predict_batch_end 1 (4, 4)", "predict_end"]
    seen.clear()
    # fit's validation is an evaluate for the callbacks too, as in Keras.
    net.fit(x, y, epochs=1, batch_size=5, validation_data=(x, y), callbacks=[recorder], verbose=0)
    assert seen[0] == "test_begin" and seen[-1] == "test_end ['accuracy', 'loss']"
    seen.clear()
    with pytest.raises(ValueError, match="callbacks"):
        net.evaluate(x, y, callbacks=[print])
    with pytest.raises(ValueError, match="expected input"):
        net.predict(x[:, :5], callbacks=[recorder])
    assert seen == []  # refused before any hook ran


# -- weights ---------------------------------------------------------------------------------------------

def test_layer_get_and_set_weights_in_keras_order_with_checks():
    net = Net(input_shape=(5,), seed=2, layers=[Dense(3), BatchNormalization()])
    dense, norm = net.layers
    kernel, bias = dense.get_weights()
    assert kernel.shape == (5, 3) and bias.shape == (3,)
    assert [w.shape for w in norm.get_weights()] == [(3,)] * 4
    np.testing.assert_array_equal(norm.get_weights()[3], np.ones(3))  # moving_variance last
    kernel[:] = 7  # a copy
    assert not np.any(dense.params["kernel"] == 7)
    new_kernel = np.arange(15, dtype=np.float64).reshape(5, 3)
    dense.set_weights([new_kernel, np.ones(3)])
    np.testing.assert_array_equal(dense.params["kernel"], new_kernel.astype(np.float32))
    assert dense.params["kernel"].dtype == np.float32
    x = np.ones((1, 5), dtype=np.float32)
    np.testing.assert_allclose(net.layers[0](x), x @ new_kernel + 1)
    before = [w.copy() for w in dense.get_weights()]
    for bad, message in (([new_kernel], "expects 2 arrays"), ([new_kernel.T, np.ones(3)], r"\(5, 3\)"),
                         ([new_kernel, np.ones(4)], "bias has shape"),
                         ([new_kernel, np.array(["a"] * 3)], "numeric"),
                         (new_kernel, "list of arrays")):
        with pytest.raises(ValueError, match=message):
            dense.set_weights(bad)
        for old, now in zip(before, dense.get_weights()):
            np.testing.assert_array_equal(old, now)  # nothing written
    unbuilt = Dense(2)
    assert unbuilt.get_weights() == []
    with pytest.raises(ValueError, match="not built"):
        unbuilt.set_weights([np.ones((2, 2))])


def test_trainable_and_non_trainable_weights():
    net = Net(input_shape=(5,), layers=[Dense(3), BatchNormalization(), Dense(2, trainable=False)])
    dense, norm, frozen = net.layers
    trainable = net.trainable_weights
    assert [w.shape for w in trainable] == [(5, 3), (3,), (3,), (3,)]
    assert trainable[0] is dense.params["kernel"]  # live arrays, as Keras's variables
    non_trainable = net.non_trainable_weights
    assert [id(w) for w in non_trainable] == [id(norm.params["moving_mean"]),
                                              id(norm.params["moving_variance"]),
                                              id(frozen.params["kernel"]), id(frozen.params["bias"])]
    assert len(net.weights) == len(trainable) + len(non_trainable) == len(net.get_weights())
    net.trainable = False
    assert net.trainable_weights == [] and len(net.non_trainable_weights) == 8


# -- to_json, model_from_json, clone_model ---------------------------------------------------------------

def test_to_json_and_model_from_json_round_trip_a_net_and_a_graph():
    net = small_net(seed=3)
    text = net.to_json()
    document = json.loads(text)
    assert document["class_name"] == "Net" and document["config"] == net.get_config()
    rebuilt = models.model_from_json(text)
    assert type(rebuilt) is Net and rebuilt.get_config() == net.get_config()
    assert not rebuilt.compiled
    x = Input((4,), name="x")
    graph = Model(x, Dense(2, name="head")(Dense(3)(x)), name="g")
    again = models.model_from_json(graph.to_json(indent=2))
    assert isinstance(again, Model) and again.get_config() == graph.get_config()
    assert models.model_from_json(json.dumps(net.get_config())).get_config() == net.get_config()


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"a": 1}', "Net.to_json"),
    ('{"class_name": "Sequential", "config": {"layers": []}, "keras_version": "3.1"}', "Keras"),
    ('{"class_name": "Net", "config": {"layers": [{"class_name": "Nope", "config": {}}]}}',
     "unknown layer type"),
    ('{"class_name": "Net", "config": {"layers": [{"class_name": "Dense", "config": {"bogus": 1}}]}}',
     "invalid network config")])
def test_model_from_json_refuses_what_is_not_a_network(text, message):
    with pytest.raises(ValueError, match=message):
        models.model_from_json(text)
    with pytest.raises(ValueError, match="JSON string"):
        models.model_from_json({"layers": []})


def test_clone_model_has_the_architecture_and_fresh_weights():
    net = small_net(seed=None)
    net.compile(loss="sparse_categorical_crossentropy")
    x, y = data()
    net.fit(x, y, epochs=1, batch_size=8, verbose=0)
    clone = models.clone_model(net)
    assert clone is not net and clone.get_config() == net.get_config()
    assert [layer.name for layer in clone.layers] == [layer.name for layer in net.layers]
    assert not clone.compiled
    assert all(a is not b for a, b in zip(clone.weights, net.weights))
    assert not np.array_equal(clone.layers[0].params["kernel"], net.layers[0].params["kernel"])
    seeded = small_net(seed=4)
    initial = seeded.get_weights()
    seeded.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for first, cloned in zip(initial, models.clone_model(seeded).get_weights()):
        np.testing.assert_array_equal(first, cloned)  # the same seed draws the same initial weights
    # clone_function, as Keras's: here every Dense gets a bias-free copy.
    def without_bias(layer):
        config = layer.get_config()
        if isinstance(layer, Dense):
            config["use_bias"] = False
        return type(layer).from_config(config)

    changed = models.clone_model(net, clone_function=without_bias)
    assert "bias" not in changed.layers[-1].params and "bias" in changed.layers[0].params
    inp = Input((4,))
    graph = Model(inp, Dense(2)(inp))
    cloned_graph = models.clone_model(graph)
    assert isinstance(cloned_graph, Model) and cloned_graph.get_config() == graph.get_config()


def test_clone_model_refusals():
    net = small_net()
    with pytest.raises(ValueError, match="Net or Model"):
        models.clone_model("net")
    with pytest.raises(ValueError, match="input_tensors"):
        models.clone_model(net, input_tensors=[Input((6, 6, 1))])
    with pytest.raises(ValueError, match="callable"):
        models.clone_model(net, clone_function=3)
    with pytest.raises(ValueError, match="itself"):
        models.clone_model(net, clone_function=lambda layer: layer)
    assert len(net.layers) == 4


def test_models_namespace_and_load_model_compile_false(tmp_path):
    assert models.Sequential is Net and models.Model is Model
    net = small_net()
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    net.save(tmp_path / "m.h5")
    assert models.load_model(tmp_path / "m.h5").compiled
    bare = models.load_model(tmp_path / "m.h5", compile=False)
    assert not bare.compiled and bare.optimizer is None
    np.testing.assert_array_equal(bare.predict(data()[0]), net.predict(data()[0]))
    with pytest.raises(ValueError, match="compile"):
        models.load_model(tmp_path / "m.h5", compile="no")
    assert mc.Sequential is Net
