"""Training, saving and strategies of graph models (Model): lists and dicts of inputs and outputs,
per-output losses, loss_weights and metrics, callbacks, Sequences, save/load round trips, format
version 1 files, data-parallel workers, and an optional PyTorch replay."""

import os

import numpy as np
import pytest

import modularcnn as mc
from modularcnn import Input, Model, Net, load_model
from modularcnn.callbacks import EarlyStopping, ModelCheckpoint
from modularcnn.layers import (
    Add,
    BatchNormalization,
    Concatenate,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
    Subtract,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "data", "format_v1")


def two_headed(seed=0, dtype="float32"):
    """Inputs "image" (6, 6, 1) and "meta" (3,); outputs "digit" (softmax 3) and "size" (linear 1)."""
    mc.utils.set_random_seed(seed)
    image, meta = Input((6, 6, 1), name="image", dtype=dtype), Input((3,), name="meta", dtype=dtype)
    h = MaxPooling2D(2)(Conv2D(4, 3, padding="same", activation="relu")(image))
    h = Flatten()(BatchNormalization()(h))
    shared = Dense(6, activation="relu", name="shared")
    joint = Concatenate()([shared(h), Dense(6, activation="relu")(meta)])
    digit = Dense(3, activation="softmax", name="digit")(Dropout(0.1)(joint))
    size = Dense(1, name="size")(Add()([Dense(6)(joint), shared(h)]))
    return Model({"image": image, "meta": meta}, {"digit": digit, "size": size}, seed=seed)


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(n, 6, 6, 1)).astype(np.float32)
    meta = rng.normal(size=(n, 3)).astype(np.float32)
    digit = (image.mean(axis=(1, 2, 3)) > 0).astype(int) + (meta[:, 0] > 0.5)
    size = (image.std(axis=(1, 2, 3)) + meta[:, 1:2].T).T.astype(np.float32)
    return {"image": image, "meta": meta}, {"digit": digit, "size": size}


def compiled(**kwargs):
    model = two_headed(**kwargs)
    model.compile(optimizer="adam", loss={"digit": "cross_entropy", "size": "mse"},
                  loss_weights={"digit": 1.0, "size": 0.5},
                  metrics={"digit": ["accuracy"], "size": ["mae"]})
    return model


def test_two_output_model_trains_with_per_output_losses_and_metrics():
    model = compiled()
    x, y = data(96)
    history = model.fit(x, y, epochs=6, batch_size=16, verbose=0, validation_split=0.25)
    logs = history.history
    for key in ("loss", "digit_loss", "digit_accuracy", "size_loss", "size_mae", "val_loss",
                "val_digit_loss", "val_size_mae"):
        assert key in logs, key
    # The minimised loss is sum_k w_k * loss_k, and both losses go down.
    result = model.evaluate(x, y, return_dict=True)
    assert result["loss"] == pytest.approx(result["digit_loss"] + 0.5 * result["size_loss"], rel=1e-6)
    assert logs["digit_loss"][-1] < logs["digit_loss"][0]
    assert logs["size_loss"][-1] < logs["size_loss"][0]


def test_lists_and_dicts_of_data_are_the_same_data():
    x, y = data()
    a, b = compiled(), compiled()
    a.fit(x, y, epochs=1, batch_size=8, verbose=0)
    b.fit([x["image"], x["meta"]], [y["digit"], y["size"]], epochs=1, batch_size=8, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    with pytest.raises(ValueError, match="missing \\['meta'\\]"):
        a.fit({"image": x["image"]}, y, verbose=0)
    with pytest.raises(ValueError, match="expected 2 arrays"):
        a.predict([x["image"]])
    with pytest.raises(ValueError, match="meta.*expected input of shape \\(N, 3\\)"):
        a.predict({"image": x["image"], "meta": np.ones((48, 4))})
    with pytest.raises(ValueError, match="class ids must lie in \\[0, 3\\)"):
        a.fit(x, {"digit": y["digit"] + 5, "size": y["size"]}, verbose=0)


def test_a_zero_loss_weight_leaves_that_head_untrained():
    model = two_headed()
    model.compile(optimizer="sgd", loss=["cross_entropy", "mse"], loss_weights=[1.0, 0.0], metrics=[])
    size_kernel = model.get_layer("size").params["kernel"].copy()
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    np.testing.assert_array_equal(model.get_layer("size").params["kernel"], size_kernel)
    with pytest.raises(ValueError, match="loss_weights"):
        model.compile(loss="mse", loss_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="3 entries.*2 outputs"):
        model.compile(loss=["mse", "mse", "mse"])


def test_train_on_batch_test_on_batch_and_sample_weight():
    model = compiled()
    x, y = data(8)
    logs = model.train_on_batch(x, y)
    assert set(logs) == {"loss", "digit_loss", "digit_accuracy", "size_loss", "size_mae"}
    tested = model.test_on_batch(x, y)
    assert tested["loss"] == pytest.approx(tested["digit_loss"] + 0.5 * tested["size_loss"])
    # Weights 2 on every sample double every loss.
    doubled = model.evaluate(x, y, sample_weight=np.full(8, 2.0), return_dict=True)
    assert doubled["digit_loss"] == pytest.approx(2 * tested["digit_loss"], rel=1e-6)
    with pytest.raises(ValueError, match="class_weight is for models with one output"):
        model.fit(x, y, class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="augment"):
        model.fit(x, y, augment=lambda b, rng: b, verbose=0)
    with pytest.raises(ValueError, match="several inputs or outputs trains in one process"):
        model.fit(x, y, workers=2, verbose=0)


def test_callbacks_and_checkpoints_see_per_output_logs(tmp_path):
    model = compiled()
    x, y = data(64)
    path = tmp_path / "best.h5"
    stop = EarlyStopping(monitor="val_size_loss", patience=1, min_delta=10.0)
    model.fit(x, y, epochs=5, batch_size=16, verbose=0, validation_data=(x, y),
              callbacks=[stop, ModelCheckpoint(str(path), monitor="val_digit_loss", save_best_only=True)])
    assert len(model.history.epoch) == 2  # min_delta=10 is never met: stops after the patience
    loaded = load_model(path)
    assert isinstance(loaded, Model) and loaded.output_names == ["digit", "size"]
    with pytest.raises(ValueError, match="val_nothing"):
        model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y),
                  callbacks=[EarlyStopping(monitor="val_nothing")])


def test_sequences_and_generators_of_lists_and_dicts():
    x, y = data(32)

    class Batches(mc.utils.Sequence):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            rows = slice(8 * i, 8 * i + 8)
            return {k: v[rows] for k, v in x.items()}, [y["digit"][rows], y["size"][rows]]

    a, b = compiled(), compiled()
    a.fit(Batches(), epochs=1, verbose=0, shuffle=False)
    b.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    # A tuple is (x, y[, sample_weight]) as in Keras: several inputs come as a list (or a dict).
    generated = a.predict(([x["image"][i:i + 8], x["meta"][i:i + 8]] for i in range(0, 32, 8)))
    direct = a.predict(x)
    for key in ("digit", "size"):
        np.testing.assert_allclose(generated[key], direct[key], rtol=1e-6)

    def bad():
        yield [x["image"][:4]], y
    with pytest.raises(mc.DataError, match="expected 2 arrays"):
        a.fit(bad(), epochs=1, verbose=0, steps_per_epoch=1)


# ------------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------------

def test_save_load_round_trip_is_exact_and_training_continues_exactly(tmp_path):
    model = compiled()
    x, y = data(40)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "graph.h5"
    model.save(path)
    loaded = load_model(path)
    assert loaded.get_config() == model.get_config()
    assert mc.saving.file_info(path)["format_version"] == 2
    for ours, theirs in zip(model.get_weights(), loaded.get_weights()):
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)
    out_a, out_b = model.predict(x), loaded.predict(x)
    for key in out_a:
        np.testing.assert_array_equal(out_a[key], out_b[key])
    ha = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    hb = loaded.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert ha.history == hb.history
    for ours, theirs in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    # Weights alone into a rebuilt architecture.
    model.save_weights(tmp_path / "w.h5")
    fresh = Model.from_config(model.get_config())
    fresh.load_weights(tmp_path / "w.h5")
    expected = model.predict(x)
    for key, value in fresh.predict(x).items():
        np.testing.assert_array_equal(value, expected[key])


def test_nested_and_shared_graphs_round_trip(tmp_path):
    mc.utils.set_random_seed(7)
    inner = Net(input_shape=(4,), name="inner", layers=[Dense(4, activation="tanh"), BatchNormalization()])
    a, b = Input((4,), name="a"), Input((4,), name="b")
    shared = Dense(4, name="twice")
    y = Subtract()([inner(shared(a)), shared(b)])
    model = Model([a, b], Dense(2, activation="softmax")(y))
    model.compile(optimizer="sgd", loss="cross_entropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(16, 4)).astype(np.float32) for _ in range(2)]
    labels = rng.integers(0, 2, 16)
    model.fit(xs, labels, epochs=2, batch_size=4, verbose=0)
    model.save(tmp_path / "nested.h5")
    loaded = load_model(tmp_path / "nested.h5")
    np.testing.assert_array_equal(loaded.predict(xs), model.predict(xs))
    assert loaded.graph.is_shared(loaded.get_layer("twice"))
    assert loaded.metrics[0][0] == "accuracy"


def test_version_1_files_written_before_graph_models_still_load(tmp_path):
    """tests/data/format_v1/net_v1.h5 was written by main at 87e7d8f (format version 1).

    Its recorded predictions came from that machine's NumPy and BLAS, whose float32 sums may round
    differently from this one's (a reinstalled NumPy moved them by one ulp): they are compared to
    float32 rounding. What loading itself promises is checked exactly: every array comes back bit for
    bit as the file holds it, and the loaded network predicts and trains exactly as the same network
    saved again in the current format.
    """
    import h5py

    expected = np.load(os.path.join(FIXTURES, "net_v1.npz"))
    path = os.path.join(FIXTURES, "net_v1.h5")
    assert mc.saving.file_info(path)["format_version"] == 1
    net = load_model(path)
    assert type(net) is Net
    with h5py.File(path, "r") as file:
        for layer in net.layers:
            for key, value in layer.params.items():
                np.testing.assert_array_equal(value, file[f"weights/{layer.name}/{key}"][()])
    net.save(tmp_path / "v2.h5")
    again = load_model(tmp_path / "v2.h5")
    np.testing.assert_array_equal(net.predict(expected["x"]), again.predict(expected["x"]))
    np.testing.assert_allclose(net.predict(expected["x"]), expected["y"], rtol=1e-6, atol=1e-7)
    # Training continues as it did in that version (the optimizer state and the random generator
    # came back too): exactly as the re-saved copy, and to rounding as recorded.
    for model in (net, again):
        model.fit(expected["x_train"], expected["y_train"], epochs=1, batch_size=8, verbose=0, workers=1)
    np.testing.assert_array_equal(net.predict(expected["x"]), again.predict(expected["x"]))
    np.testing.assert_allclose(net.predict(expected["x"]), expected["y_after_fit"], rtol=1e-6, atol=2e-7)


def test_graph_keras_archive_reads_back_exactly(tmp_path):
    model = two_headed()
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    assert type(again) is Model and again.output_names == model.output_names
    x = [np.random.default_rng(0).normal(size=(3, *shape)) for shape in model.input_shapes]
    want = model.predict(x)  # a dict by output name (the model was built with dicts)
    got = again.predict(x)  # a list in output order: the archive keeps no dict keys
    assert isinstance(want, dict) and isinstance(got, list)
    for name, array in zip(model.output_names, got):
        np.testing.assert_array_equal(array, want[name])


# ------------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------------

def single_io_model():
    mc.utils.set_random_seed(11)
    x = Input((8, 8, 2), dtype="float64")
    h = BatchNormalization()(Conv2D(4, 3, padding="same", activation="relu")(x))
    y = Add()([h, Conv2D(4, 1)(x)])
    y = MaxPooling2D(2)(Conv2D(4, 3, padding="same", activation="relu")(y))
    return Model(x, Dense(3, activation="softmax")(Flatten()(y)), seed=0)


def test_a_single_io_model_trains_data_parallel_as_in_one_process():
    from modularcnn.training.strategies import close_pool

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(48, 8, 8, 2)), rng.integers(0, 3, 48)
    one, two = single_io_model(), single_io_model()
    for model in (one, two):
        model.compile(optimizer="sgd", loss="cross_entropy")
    one.fit(x, y, epochs=2, batch_size=16, verbose=0, workers=1)
    try:
        two.fit(x, y, epochs=2, batch_size=16, verbose=0, workers=2)
    finally:
        close_pool(two)
    for a, b in zip(one.get_weights(), two.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_profile_times_every_graph_layer():
    model = single_io_model()
    model.compile(optimizer="adam", loss="cross_entropy")
    rng = np.random.default_rng(0)
    rows = model.profile(rng.normal(size=(16, 8, 8, 2)), rng.integers(0, 3, 16), batches=2,
                         batch_size=8, print_fn=None)
    names = [row["name"] for row in rows]
    assert names[-2:] == ["loss", "optimizer"]
    timed = {name for row in rows[:-2] for name in row["layers"]}
    assert timed == {layer.name for layer in model.layers if type(layer).__name__ != "InputLayer"}
    assert any("ConvReluPool" in row["type"] for row in rows)  # the fused step is timed as one
    assert model.plan().kinds() == [row["type"] for row in rows[:-2]]


# ------------------------------------------------------------------------------------------------
# PyTorch replay (optional)
# ------------------------------------------------------------------------------------------------

def test_two_input_two_output_graph_against_pytorch():
    torch = pytest.importorskip("torch")
    mc.utils.set_random_seed(2)
    a, b = Input((7, 6, 2), dtype="float64"), Input((7, 6, 2), dtype="float64")
    shared = Conv2D(3, 3, activation="tanh")
    fa, fb = shared(a), shared(b)                                       # (5, 4, 3)
    mixed = Conv2D(4, 1, activation="relu")(Concatenate()([fa, fb]))     # (5, 4, 4)
    dense = Dense(3, activation="softmax")
    out1 = dense(Flatten()(mixed))
    out2 = Dense(2)(Flatten()(Subtract()([fa, fb])))
    model = Model([a, b], [out1, out2])
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(2, 7, 6, 2)), rng.normal(size=(2, 7, 6, 2))
    r1, r2 = rng.normal(size=(2, 3)), rng.normal(size=(2, 2))
    y1, y2 = model.forward([xa, xb], training=True)
    ga, gb = model.backward([r1, r2])

    def conv(x, layer, act):
        w = torch.tensor(layer.params["kernel"]).permute(3, 2, 0, 1)
        y = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), w, torch.tensor(layer.params["bias"]))
        return act(y.permute(0, 2, 3, 1))

    def linear(x, layer):
        return x @ torch.tensor(layer.params["kernel"]) + torch.tensor(layer.params["bias"])

    ta = torch.tensor(xa, requires_grad=True)
    tb = torch.tensor(xb, requires_grad=True)
    head2 = out2.node.layer
    mixer = mixed.node.layer
    ta_f, tb_f = conv(ta, shared, torch.tanh), conv(tb, shared, torch.tanh)
    tm = conv(torch.cat([ta_f, tb_f], dim=-1), mixer, torch.relu)
    t1 = torch.softmax(linear(tm.reshape(2, -1), dense), dim=-1)
    t2 = linear((ta_f - tb_f).reshape(2, -1), head2)
    np.testing.assert_allclose(y1, t1.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(y2, t2.detach().numpy(), rtol=1e-10)
    (t1 * torch.tensor(r1)).sum().add((t2 * torch.tensor(r2)).sum()).backward()
    np.testing.assert_allclose(ga, ta.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-9, atol=1e-12)
