"""ModelCheckpoint: file name placeholders, save_best_only (also across resumed runs), weights-only
checkpoints, and checkpoints that stay loadable when training is interrupted with Ctrl-C."""

import os
import signal

import numpy as np
import pytest

from modularcnn import ModelFileError, Net, load_model, optimizers
from modularcnn.callbacks import Callback, ModelCheckpoint
from modularcnn.layers import Dense, Dropout
from modularcnn.saving import file_info, hdf5_format


def make_net(seed=0):
    net = Net(input_shape=(4,), seed=seed)
    net.add(Dense(6, activation="relu"))
    net.add(Dropout(0.2))
    net.add(Dense(3, activation="softmax"))
    net.compile(optimizer=optimizers.Adam(0.01), loss="cross_entropy", metrics=["acc"])
    return net


def make_data(n=24):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype(np.float32), np.arange(n) % 3


class Scripted(Callback):
    """Overwrites ``logs["score"]`` with scripted values and snapshots the weights of every epoch.

    Placed before the checkpoint, so the checkpoint sees the scripted score.
    """

    def __init__(self, scores):
        super().__init__()
        self.scores = list(scores)
        self.snapshots = {}

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.scores.pop(0)
        self.snapshots[epoch + 1] = self.model.get_weights()


def weights_equal(net, snapshot):
    return all(a.dtype == b.dtype and a.tobytes() == b.tobytes()
               for a, b in zip(net.get_weights(), snapshot))


def test_epoch_and_metric_placeholders(tmp_path):
    net = make_net()
    x, y = make_data()
    pattern = str(tmp_path / "ck" / "e{epoch:02d}-{val_loss:.4f}-{acc:.2f}.h5")
    checkpoint = ModelCheckpoint(pattern)
    history = net.fit(x, y, epochs=3, batch_size=8, validation_data=(x, y), callbacks=[checkpoint],
                      verbose=0)
    h = history.history
    expected = sorted(f"e{epoch + 1:02d}-{h['val_loss'][epoch]:.4f}-{h['acc'][epoch]:.2f}.h5"
                      for epoch in range(3))
    assert sorted(os.listdir(tmp_path / "ck")) == expected
    assert checkpoint.last_path.endswith(expected[-1])
    last = load_model(checkpoint.last_path)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(last.get_weights(), net.get_weights()))
    assert file_info(checkpoint.last_path)["epoch"] == 3


def test_unknown_placeholder_names_what_is_available(tmp_path):
    net = make_net()
    x, y = make_data()
    checkpoint = ModelCheckpoint(str(tmp_path / "{epoch}-{val_acc}.h5"))
    with pytest.raises(ValueError, match=r"'val_acc', which is not logged; available: epoch, acc"):
        net.fit(x, y, epochs=1, callbacks=[checkpoint], verbose=0)


@pytest.mark.parametrize("pattern", ["ck{}.h5", "ck{0}.h5", "ck{epoch.h5"])
def test_bad_patterns_are_refused_at_once(pattern):
    with pytest.raises(ValueError, match="filepath"):
        ModelCheckpoint(pattern)


def test_save_best_only_keeps_the_best_epoch(tmp_path):
    net = make_net()
    x, y = make_data()
    path = tmp_path / "best.h5"
    scripted = Scripted([3.0, 1.0, 2.0, 0.5, 0.7])
    checkpoint = ModelCheckpoint(path, monitor="score", save_best_only=True, mode="min")
    saved = []
    original_on_epoch_end = checkpoint.on_epoch_end

    def recording(epoch, logs=None):
        before = os.stat(path).st_mtime_ns if path.exists() else None
        original_on_epoch_end(epoch, logs)
        if path.exists() and os.stat(path).st_mtime_ns != before:
            saved.append(file_info(path)["epoch"])

    checkpoint.on_epoch_end = recording
    net.fit(x, y, epochs=5, batch_size=8, callbacks=[scripted, checkpoint], verbose=0)
    assert saved == [1, 2, 4]
    record = file_info(path)["checkpoint"]
    assert record == {"epoch": 4, "monitor": "score", "mode": "min", "best": 0.5}
    assert weights_equal(load_model(path), scripted.snapshots[4])


def test_mode_auto_maximises_accuracy_names(tmp_path):
    net = make_net()
    x, y = make_data()
    path = tmp_path / "best.h5"
    scripted = Scripted([0.2, 0.9, 0.5])
    checkpoint = ModelCheckpoint(path, monitor="score_acc", save_best_only=True)

    class Rename(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["score_acc"] = logs["score"]

    net.fit(x, y, epochs=3, batch_size=8, callbacks=[scripted, Rename(), checkpoint], verbose=0)
    assert file_info(path)["checkpoint"]["best"] == 0.9 and file_info(path)["epoch"] == 2
    assert weights_equal(load_model(path), scripted.snapshots[2])


def test_resumed_run_does_not_overwrite_a_better_model(tmp_path):
    x, y = make_data()
    path = tmp_path / "best.h5"
    first = make_net()
    first_scores = Scripted([1.0, 0.5])
    first.fit(x, y, epochs=2, batch_size=8, verbose=0,
              callbacks=[first_scores, ModelCheckpoint(path, monitor="score", save_best_only=True)])
    assert file_info(path)["checkpoint"]["best"] == 0.5

    # A new process would do this: load the checkpoint, new callback, continue from epoch 2.
    resumed = load_model(path)
    worse = Scripted([0.8, 0.6])
    checkpoint = ModelCheckpoint(path, monitor="score", save_best_only=True)
    resumed.fit(x, y, epochs=4, initial_epoch=2, batch_size=8, callbacks=[worse, checkpoint], verbose=0)
    assert checkpoint.best == 0.5
    assert file_info(path)["checkpoint"] == {"epoch": 2, "monitor": "score", "mode": "min", "best": 0.5}
    assert weights_equal(load_model(path), first_scores.snapshots[2])

    better = Scripted([0.3])
    resumed.fit(x, y, epochs=5, initial_epoch=4, batch_size=8, verbose=0,
                callbacks=[better, ModelCheckpoint(path, monitor="score", save_best_only=True)])
    assert file_info(path)["checkpoint"]["best"] == 0.3
    assert weights_equal(load_model(path), better.snapshots[5])


def test_best_of_another_monitor_is_not_reused(tmp_path):
    x, y = make_data()
    path = tmp_path / "best.h5"
    net = make_net()
    net.fit(x, y, epochs=1, batch_size=8, verbose=0,
            callbacks=[Scripted([0.1]), ModelCheckpoint(path, monitor="score", save_best_only=True)])
    other = ModelCheckpoint(path, monitor="loss", save_best_only=True)
    net.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[other])
    assert file_info(path)["checkpoint"]["monitor"] == "loss"


def test_unreadable_existing_file_is_replaced(tmp_path, capsys):
    x, y = make_data()
    path = tmp_path / "best.h5"
    path.write_bytes(b"garbage from an old crash")
    net = make_net()
    net.fit(x, y, epochs=1, batch_size=8, verbose=0,
            callbacks=[Scripted([5.0]), ModelCheckpoint(path, monitor="score", save_best_only=True,
                                                         verbose=1)])
    assert file_info(path)["checkpoint"]["best"] == 5.0
    output = capsys.readouterr().out
    assert "cannot be read" in output and "score improved from nothing to 5.00000" in output


def test_missing_monitor_is_an_error(tmp_path):
    net = make_net()
    x, y = make_data()
    with pytest.raises(ValueError, match="val_loss"):
        net.fit(x, y, epochs=1, verbose=0,
                callbacks=[ModelCheckpoint(tmp_path / "m.h5", save_best_only=True)])


def test_weights_only_checkpoints(tmp_path):
    net = make_net()
    x, y = make_data()
    path = tmp_path / "w-{epoch}.h5"
    net.fit(x, y, epochs=2, batch_size=8, verbose=0,
            callbacks=[ModelCheckpoint(path, save_weights_only=True, monitor="loss")])
    info = file_info(tmp_path / "w-2.h5")
    assert info["kind"] == "weights" and info["epoch"] == 2 and info["checkpoint"]["monitor"] == "loss"
    fresh = make_net(seed=9)
    fresh.load_weights(tmp_path / "w-2.h5")
    assert weights_equal(fresh, net.get_weights())
    with pytest.raises(ModelFileError, match="weights only"):
        load_model(tmp_path / "w-2.h5")


class InterruptAt(Callback):
    """Sends this process SIGINT (what Ctrl-C does) at the start of a given epoch and batch."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = None
        self.snapshots = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGINT)

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots[epoch + 1] = self.model.get_weights()


def test_ctrl_c_leaves_the_last_checkpoint_loadable(tmp_path, capsys):
    net = make_net()
    x, y = make_data()
    path = tmp_path / "last.h5"
    interrupt = InterruptAt(epoch=2, batch=1)
    history = net.fit(x, y, epochs=5, batch_size=8, verbose=0,
                      callbacks=[interrupt, ModelCheckpoint(path)])
    assert history.epoch == [0, 1]  # stopped during the third epoch
    assert "Interrupted" in capsys.readouterr().out
    loaded = load_model(path)
    assert weights_equal(loaded, interrupt.snapshots[2]) and file_info(path)["epoch"] == 2
    assert not weights_equal(net, interrupt.snapshots[2])  # the partial epoch was not saved
    assert os.listdir(tmp_path) == ["last.h5"]


def test_ctrl_c_during_a_checkpoint_write_does_not_tear_it(tmp_path, monkeypatch):
    """SIGINT arriving in the middle of writing the file: fit's handler only sets a flag, the write
    completes, training stops after the next batch, and the file is the complete checkpoint."""
    net = make_net()
    x, y = make_data()
    path = tmp_path / "last.h5"
    original_array = hdf5_format._Writer.array
    calls = {"n": 0}

    def interrupting_array(self, group, name, array):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return original_array(self, group, name, array)

    monkeypatch.setattr(hdf5_format._Writer, "array", interrupting_array)
    snapshots = InterruptAt(epoch=-1, batch=-1)
    history = net.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[snapshots, ModelCheckpoint(path)])
    assert history.epoch == [0]
    assert weights_equal(load_model(path), snapshots.snapshots[1])
    assert os.listdir(tmp_path) == ["last.h5"]
