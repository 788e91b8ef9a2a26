"""LambdaCallback, BackupAndRestore (interrupted by an exception and by Ctrl-C, then resumed) and
ModelCheckpoint(save_freq=) in batches."""

import os
import signal

import numpy as np
import pytest

from modularcnn import ModelFileError, Net, optimizers
from modularcnn.callbacks import BackupAndRestore, LambdaCallback, ModelCheckpoint
from modularcnn.layers import Dense, Dropout
from modularcnn.saving import file_info


def make_net(seed=0, units=6):
    # float64, a seed, dropout and Adam: resuming must restore weights, moments and the generator.
    net = Net(input_shape=(4,), seed=seed, dtype="float64")
    net.add(Dense(units, activation="relu"))
    net.add(Dropout(0.3))
    net.add(Dense(3, activation="softmax"))
    net.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    return net


def make_data(n=40):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)), np.arange(n) % 3


# -- LambdaCallback ------------------------------------------------------------------------------------

def test_lambda_callback_calls_its_functions_at_their_hooks():
    seen = []
    callback = LambdaCallback(
        on_train_begin=lambda logs: seen.append("train_begin"),
        on_epoch_end=lambda epoch, logs: seen.append(f"epoch_end {epoch} {sorted(logs)[:2]}"),
        on_batch_end=lambda batch, logs: seen.append(f"batch_end {batch}"),
        on_test_end=lambda logs: seen.append("test_end"),
        on_predict_begin=lambda logs: seen.append("predict_begin"))
    net = make_net()
    x, y = make_data(16)
    net.fit(x, y, epochs=2, batch_size=8, validation_data=(x, y), callbacks=[callback], verbose=0)
    assert seen == ["train_begin", "batch_end 0", "batch_end 1", "test_end",
                    "epoch_end 0 ['accuracy', 'loss']", "batch_end 0", "batch_end 1", "test_end",
                    "epoch_end 1 ['accuracy', 'loss']"]
    seen.clear()
    net.predict(x, callbacks=[callback])
    assert seen == ["predict_begin"]


@pytest.mark.parametrize("kwargs, message", [
    ({"on_epoch_end": 3}, "callable"), ({"on_epoc_end": print}, "not hooks"),
    ({"on_batch_end": print, "on_train_batch_end": print}, "same hook")])
def test_lambda_callback_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LambdaCallback(**kwargs)


# -- BackupAndRestore ----------------------------------------------------------------------------------

class Crash(Exception):
    pass


def crash_after(epochs):
    def hook(epoch, logs):
        if epoch + 1 == epochs:
            raise Crash(f"machine lost after epoch {epoch + 1}")
    return LambdaCallback(on_epoch_end=hook)


def test_backup_and_restore_resumes_an_interrupted_fit_exactly(tmp_path):
    x, y = make_data()
    reference = make_net()
    reference.fit(x, y, epochs=5, batch_size=8, validation_split=0.25, verbose=0)

    backup = BackupAndRestore(tmp_path / "backup")
    first = make_net()
    with pytest.raises(Crash):
        first.fit(x, y, epochs=5, batch_size=8, validation_split=0.25, verbose=0,
                  callbacks=[backup, crash_after(3)])
    assert file_info(backup.path)["epoch"] == 3
    # The script is run again: a new network, the same seed, the same call.
    second = make_net()
    epochs_run = []
    history = second.fit(x, y, epochs=5, batch_size=8, validation_split=0.25, verbose=0,
                         callbacks=[backup, LambdaCallback(on_epoch_begin=lambda e, l: epochs_run.append(e))])
    assert backup.restored_epoch == 3 and epochs_run == [3, 4] and history.epoch == [3, 4]
    for mine, theirs in zip(second.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert not os.path.exists(backup.path)  # deleted once training finished
    # Nothing to restore now: a third fit starts at epoch 0.
    assert make_net().fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[backup]).epoch == [0]


def test_ctrl_c_keeps_the_backup_and_the_next_fit_resumes(tmp_path):
    x, y = make_data()
    reference = make_net()
    reference.fit(x, y, epochs=4, batch_size=8, verbose=0)
    backup = BackupAndRestore(tmp_path / "b")
    press = LambdaCallback(on_train_batch_end=lambda batch, logs: os.kill(os.getpid(), signal.SIGINT)
                           if len(history_of_first.history.get("loss", [])) == 2 and batch == 1 else None)
    first = make_net()
    history_of_first = first.history = None
    history_of_first = type("H", (), {"history": {}})()

    def count(epoch, logs):
        history_of_first.history.setdefault("loss", []).append(logs["loss"])

    history = first.fit(x, y, epochs=4, batch_size=8, verbose=0,
                        callbacks=[backup, LambdaCallback(on_epoch_end=count), press])
    assert history.interrupted and history.epoch == [0, 1]
    assert file_info(backup.path)["epoch"] == 2  # the unfinished third epoch is not backed up
    second = make_net()
    assert second.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[backup]).epoch == [2, 3]
    for mine, theirs in zip(second.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_backup_and_restore_refusals(tmp_path):
    (tmp_path / "file").write_text("x")
    for kwargs, message in (({"backup_dir": tmp_path / "file"}, "is a file"),
                            ({"backup_dir": ""}, "folder path"),
                            ({"backup_dir": tmp_path, "save_freq": 10}, "save_freq"),
                            ({"backup_dir": tmp_path, "delete_checkpoint": "no"}, "delete_checkpoint")):
        with pytest.raises(ValueError, match=message):
            BackupAndRestore(**kwargs)
    x, y = make_data()
    backup = BackupAndRestore(tmp_path / "b", delete_checkpoint=False)
    make_net().fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[backup])
    assert os.path.isfile(backup.path)  # kept when asked
    other = make_net(units=5)
    before = other.get_weights()
    with pytest.raises(ModelFileError, match="another network"):
        other.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[backup])
    for a, b in zip(before, other.get_weights()):
        np.testing.assert_array_equal(a, b)
    with open(backup.path, "wb") as handle:
        handle.write(b"not an HDF5 file")
    with pytest.raises(ModelFileError, match="cannot be restored"):
        make_net().fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[backup])


# -- ModelCheckpoint(save_freq=) -------------------------------------------------------------------------

def test_model_checkpoint_every_n_batches(tmp_path):
    x, y = make_data()  # 5 batches of 8 per epoch
    net = make_net()
    snapshots = {}
    checkpoint = ModelCheckpoint(str(tmp_path / "e{epoch}-b{batch}-{loss:.3f}.h5"), save_freq=3)
    record = LambdaCallback(on_train_batch_end=lambda batch, logs: snapshots.update(
        {(len(snapshots_epochs), batch + 1): net.get_weights()}))
    snapshots_epochs = []
    net.fit(x, y, epochs=2, batch_size=8, verbose=0,
            callbacks=[record, checkpoint, LambdaCallback(on_epoch_end=lambda e, l: snapshots_epochs.append(e))])
    names = sorted(os.listdir(tmp_path))
    # Batches 3 and 6 (= the first of epoch 2) and 9 (= its fourth): counted across epochs, as Keras.
    assert [name.split("-")[:2] for name in names] == [["e1", "b3"], ["e2", "b1"], ["e2", "b4"]]
    from modularcnn import load_model
    for name, key in zip(names, [(0, 3), (1, 1), (1, 4)]):
        for saved, expected in zip(load_model(tmp_path / name).get_weights(), snapshots[key]):
            np.testing.assert_array_equal(saved, expected)
    assert file_info(tmp_path / names[0])["checkpoint"]["batch"] == 3
    epoch_files = tmp_path / "epochs"
    net.fit(x, y, epochs=2, batch_size=8, verbose=0,
            callbacks=[ModelCheckpoint(str(epoch_files / "{epoch}.h5"), save_freq="epoch")])
    assert sorted(os.listdir(epoch_files)) == ["1.h5", "2.h5"]


@pytest.mark.parametrize("kwargs, message", [
    ({"save_freq": 0}, "save_freq"), ({"save_freq": "batch"}, "save_freq"), ({"save_freq": 2.5}, "save_freq"),
    ({"save_freq": True}, "save_freq"),
    ({"save_freq": 2, "save_best_only": True}, "val_loss")])
def test_model_checkpoint_save_freq_refusals(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelCheckpoint(str(tmp_path / "m.h5"), **kwargs)
