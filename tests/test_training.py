"""Training API: compile/fit/train/evaluate/predict, callbacks, progress output, reproducibility,
Ctrl-C, and every bad input the training issue lists."""

import os
import signal

import numpy as np
import pytest

from modularcnn import Net, callbacks, losses, optimizers
from modularcnn.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling


def blobs(n=240, classes=3, features=6, seed=0, ordered=False):
    """Separable Gaussian clusters: class c centred at 3 * e_c."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n // classes) if ordered else rng.integers(0, classes, n)
    x = rng.normal(0, 0.7, (len(y), features)).astype(np.float32)
    x[np.arange(len(y)), y] += 3
    return x, y


def mlp(seed=0, features=6, classes=3, dropout=0.0):
    net = Net(input_shape=(features,), seed=seed)
    net.add(Dense(16, activation="relu"))
    if dropout:
        net.add(Dropout(dropout))
    net.add(Dense(classes, activation="softmax"))
    net.compile(optimizer=optimizers.Adam(0.01))
    return net


def weights_of(net):
    return [w.copy() for w in net.get_weights()]


def test_fit_learns_and_history_has_keras_keys():
    x, y = blobs()
    net = mlp()
    history = net.fit(x, y, epochs=5, batch_size=16, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert not history.interrupted
    assert all(len(v) == 5 for v in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9
    assert history.history["lr"] == [pytest.approx(1e-2)] * 5
    result = net.evaluate(x, y, return_dict=True)
    assert set(result) == {"loss", "accuracy"} and result["accuracy"] > 0.9


def test_evaluate_matches_a_direct_computation():
    x, y = blobs()
    net = mlp()
    net.compile(loss="sparse_categorical_crossentropy", metrics=["acc"])
    probs = net.predict(x)
    expected_loss = -np.mean(np.log(probs[np.arange(len(y)), y]))
    result = net.evaluate(x, y, batch_size=7, return_dict=True)
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert result["acc"] == pytest.approx(np.mean(probs.argmax(1) == y))
    np.testing.assert_array_equal(net.predict_classes(x), probs.argmax(1))


def test_one_hot_and_class_id_labels_train_identically():
    x, y = blobs()
    a, b = mlp(seed=5), mlp(seed=5)
    a.fit(x, y, epochs=2, verbose=0)
    b.fit(x, np.eye(3, dtype=np.float32)[y], epochs=2, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_same_seed_gives_bit_identical_weights():
    x, y = blobs()
    runs = []
    for _ in range(2):
        net = mlp(seed=11, dropout=0.3)
        net.fit(x, y, epochs=3, batch_size=20, validation_split=0.2, verbose=0)
        runs.append(net.get_weights())
    for wa, wb in zip(*runs):
        np.testing.assert_array_equal(wa, wb)
    other = mlp(seed=12, dropout=0.3)
    other.fit(x, y, epochs=3, batch_size=20, validation_split=0.2, verbose=0)
    assert not np.array_equal(other.get_weights()[0], runs[0][0])


def test_validation_split_is_stratified_on_ordered_data():
    x, y = blobs(n=300, ordered=True)  # all 0s, then all 1s, then all 2s
    seen = {}

    class Spy(callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["samples"] = self.params["samples"]

    net = mlp()
    history = net.fit(x, y, epochs=1, validation_split=0.2, verbose=0, callbacks=[Spy()])
    assert seen["samples"] == 240
    # Keras's "last 20%" would validate on class 2 only; stratified validation sees all three.
    from modularcnn.training.data import validation_split_indices
    _, val = validation_split_indices(y, 0.2, np.random.default_rng(0))
    assert np.bincount(y[val]).tolist() == [20, 20, 20]
    assert np.isfinite(history.history["val_loss"][0])


def test_seed_style_train_call():
    x, y = blobs()
    net = mlp()
    history = net.train(x, y, epochs=3, learn_rate=1e-2, val_size=0.1)
    assert isinstance(net.optimizer, optimizers.Adam)
    assert history.history["lr"] == [pytest.approx(1e-2)] * 3
    assert history.history["val_accuracy"][-1] > 0.9


def test_grayscale_images_without_channel_axis_are_accepted():
    rng = np.random.default_rng(0)
    x = rng.random((20, 8, 8)).astype(np.float32)
    y = rng.integers(0, 2, 20)
    net = Net(input_shape=(8, 8, 1), seed=0)
    net.add(Conv2D(2, 3, activation="relu"))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(2, activation="softmax"))
    net.fit(x, y, epochs=1, verbose=0)
    assert net.predict(x).shape == (20, 2)


def test_fused_cross_entropy_survives_extreme_logits():
    net = Net(input_shape=(2,), seed=0)
    layer = net.add(Dense(3, activation="softmax"))
    layer.params["kernel"][:] = [[1e4, -1e4, 0], [-1e4, 1e4, 0]]
    x = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    y = np.array([1, 0, 1])  # confidently wrong: probability 0 for the true class
    net.compile(optimizer=optimizers.SGD(1e-6))
    result = net.train_on_batch(x, y)
    assert np.isfinite(result["loss"]) and result["loss"] > 1e3
    assert all(np.all(np.isfinite(w)) for w in net.get_weights())


def test_cross_entropy_on_a_linear_output_warns_once_and_uses_logits():
    x, y = blobs()
    net = Net(input_shape=(6,), seed=0)
    net.add(Dense(3))
    with pytest.warns(UserWarning, match="treated as logits"):
        net.fit(x, y, epochs=1, verbose=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.fit(x, y, epochs=1, verbose=0)
    logits = net.predict(x)
    expected = losses.CategoricalCrossentropy(from_logits=True)(y, logits)
    assert net.evaluate(x, y, return_dict=True)["loss"] == pytest.approx(expected, rel=1e-5)


def test_softmax_layer_then_cross_entropy_is_fused_and_matches():
    x, y = blobs()
    fused = Net(input_shape=(6,), seed=2)
    fused.add(Dense(3))
    fused.add(Activation("softmax"))
    fused.fit(x, y, epochs=2, verbose=0)
    assert fused._objective.mode == "fused"
    dense_softmax = Net(input_shape=(6,), seed=2)
    dense_softmax.add(Dense(3, activation="softmax"))
    dense_softmax.fit(x, y, epochs=2, verbose=0)
    for a, b in zip(fused.get_weights(), dense_softmax.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_regression_with_mse():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], dtype=np.float32) + 0.3
    net = Net(input_shape=(3,), seed=0)
    net.add(Dense(1))
    net.compile(optimizer=optimizers.SGD(0.1), loss="mse", metrics=[])
    history = net.fit(x, y, epochs=30, verbose=0)
    assert history.history["loss"][-1] < 1e-4
    np.testing.assert_allclose(net.layers[0].params["kernel"][:, 0], [1, -2, 0.5], atol=1e-2)


def test_early_stopping_restores_best_weights_even_at_the_last_epoch():
    x, y = blobs()
    net = mlp()
    snapshots = []

    class Recorder(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append((logs["val_loss"], self.model.get_weights()))

    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=100, restore_best_weights=True)
    # A large learning rate makes validation loss bounce, so the last epoch is rarely the best.
    net.compile(optimizer=optimizers.SGD(3.0))
    net.fit(x, y, epochs=8, validation_split=0.25, verbose=0, callbacks=[Recorder(), stopper])
    best_loss, best_weights = min(snapshots, key=lambda item: item[0])
    assert stopper.stopped_epoch is None  # ran to the end without stopping
    for restored, expected in zip(net.get_weights(), best_weights):
        np.testing.assert_array_equal(restored, expected)


def test_early_stopping_stops_after_patience():
    x, y = blobs()
    net = mlp()
    stopper = callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10.0)
    history = net.fit(x, y, epochs=10, verbose=0, callbacks=[stopper])
    assert len(history.history["loss"]) == 2 and stopper.stopped_epoch == 1


def test_learning_rate_scheduler_and_reduce_on_plateau():
    x, y = blobs()
    net = mlp()
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5 ** epoch)
    history = net.fit(x, y, epochs=3, verbose=0, callbacks=[scheduler])
    assert history.history["lr"] == pytest.approx([0.1, 0.05, 0.025])

    net = mlp()
    net.compile(optimizer=optimizers.SGD(0.4))
    plateau = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=100.0)
    history = net.fit(x, y, epochs=4, verbose=0, callbacks=[plateau])
    # No epoch improves by 100: after the first (the baseline) each epoch ends by halving the rate,
    # and "lr" records the rate each epoch trained with.
    assert history.history["lr"] == pytest.approx([0.4, 0.4, 0.2, 0.1])
    assert net.optimizer.current_learning_rate == pytest.approx(0.05)


def test_monitoring_a_missing_figure_names_the_available_ones():
    x, y = blobs()
    with pytest.raises(ValueError, match="val_loss.*available: accuracy, loss, lr"):
        mlp().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.EarlyStopping()])


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Net.fit. the loss became:RuntimeWarning")
def test_terminate_on_nan_and_csv_logger(tmp_path):
    x, y = blobs()
    path = tmp_path / "log.csv"
    net = mlp()
    net.fit(x, y, epochs=2, verbose=0, validation_split=0.2, callbacks=[callbacks.CSVLogger(path)])
    rows = path.read_text().splitlines()
    assert rows[0] == "epoch,accuracy,loss,lr,val_accuracy,val_loss" and len(rows) == 3

    net = Net(input_shape=(6,), seed=0)
    net.add(Dense(1))
    net.compile(optimizer=optimizers.SGD(1e3), loss="mse", metrics=[])
    history = net.fit(x * 1e3, y.astype(np.float32), epochs=50, batch_size=8, verbose=0,
                      callbacks=[callbacks.TerminateOnNaN()])
    assert len(history.epoch) < 50


def test_verbose_output_off_a_terminal_is_bounded_and_plain(capsys):
    x, y = blobs(n=600)
    mlp().fit(x, y, epochs=2, batch_size=4, validation_split=0.1, verbose=1)  # 135 batches per epoch
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    lines = out.strip().splitlines()
    assert len(lines) <= 2 * 5
    assert lines[-1].startswith("Epoch 2/2") and "val_accuracy" in lines[-1]


def test_verbose_two_prints_one_line_per_epoch_and_zero_is_silent(capsys):
    x, y = blobs()
    mlp().fit(x, y, epochs=3, verbose=2)
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    mlp().fit(x, y, epochs=3, verbose=0)
    assert capsys.readouterr().out == ""


def test_ctrl_c_stops_after_the_current_batch_and_keeps_history(capsys):
    x, y = blobs(n=300)

    class PressCtrlC(callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if self.model.optimizer.iterations == 35:  # batch 6 of epoch 2 (30 batches per epoch)
                os.kill(os.getpid(), signal.SIGINT)

    net = mlp()
    net.compile(optimizer="sgd")
    history = net.fit(x, y, epochs=5, batch_size=10, verbose=0, callbacks=[PressCtrlC()])
    assert net.optimizer.iterations == 36  # the interrupted batch finished, no more ran
    assert history.epoch == [0]  # the complete epoch is kept, the interrupted one is not logged
    assert history.interrupted
    assert "Interrupted" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _bad_input_cases():
    x, y = blobs(n=30)
    nan_x = x.copy()
    nan_x[3, 2] = np.nan
    return [
        ("length mismatch", dict(x=x, y=y[:-1]), "30 samples but y has 29"),
        ("label too large", dict(x=x, y=np.where(y == 2, 3, y)), r"\[0, 3\).*from 0 to 3"),
        ("negative label", dict(x=x, y=y - 1), r"from -1 to 1"),
        ("fractional labels", dict(x=x, y=y + 0.5), "whole numbers"),
        ("one-hot of wrong width", dict(x=x, y=np.eye(4)[y]), r"\(30, 3\).*\(30, 4\)"),
        ("wrong image shape", dict(x=x[:, :5], y=y), r"expected input of shape \(N, 6\), got \(30, 5\)"),
        ("nan in x", dict(x=nan_x, y=y), r"NaN or inf.*\(3, 2\)"),
        ("inf in x", dict(x=np.full_like(x, np.inf), y=y), "NaN or inf"),
        ("empty x", dict(x=x[:0], y=y[:0]), "empty"),
        ("validation_split 1", dict(x=x, y=y, validation_split=1.0), r"\[0, 1\)"),
        ("validation_split negative", dict(x=x, y=y, validation_split=-0.1), r"\[0, 1\)"),
        ("validation_split bad beside validation_data",
         dict(x=x, y=y, validation_split=-0.1, validation_data=(x, y)), r"\[0, 1\)"),
        ("bad batch size", dict(x=x, y=y, batch_size=0), "batch_size"),
        ("string labels", dict(x=x, y=np.array(["a"] * 30)), "numeric"),
    ]


@pytest.mark.parametrize("label, kwargs, message", _bad_input_cases(), ids=[c[0] for c in _bad_input_cases()])
def test_bad_input_raises_before_any_update(label, kwargs, message):
    net = mlp()
    before = weights_of(net)
    with pytest.raises(ValueError, match=message):
        net.fit(verbose=0, **kwargs)
    for a, b in zip(before, net.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert net.optimizer.iterations == 0


@pytest.mark.parametrize("kind, name", [("optimizer", "adamx"), ("loss", "crossentropie"),
                                        ("metrics", ["acuracy"])])
def test_unknown_names_list_valid_ones(kind, name):
    with pytest.raises(ValueError, match="(?i)valid names"):
        mlp().compile(**{kind: name})


def test_augment_is_applied_to_training_batches_only():
    x, y = blobs()
    seen = []

    def augment(batch, rng):
        seen.append(batch.shape[0])
        return batch + rng.normal(0, 0.01, batch.shape).astype(batch.dtype)

    net = mlp()
    history = net.fit(x, y, epochs=2, batch_size=50, validation_split=0.25, augment=augment, verbose=0)
    assert sum(seen) == 2 * 180  # every training sample, each epoch; never the 60 validation ones
    assert history.history["val_accuracy"][-1] > 0.9
    with pytest.raises(ValueError, match="augment"):
        mlp().fit(x, y, augment="flip", verbose=0)
