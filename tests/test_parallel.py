"""Data-parallel training (fit(workers=N)): the same training as one process, and clean failures."""

import glob
import os
import signal
import sys

import numpy as np
import pytest

from modularcnn import Net
from modularcnn.callbacks import Callback
from modularcnn.layers import (
    Convolutional,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPooling,
    Residual,
)
from modularcnn.training import transport
from modularcnn.training.strategies import policy as parallel
from modularcnn.training.strategies import resolve_workers
from modularcnn.training.transport import WorkerError


def small_net(loss="sparse_categorical_crossentropy", outputs=3, activation="softmax",
              dtype="float64", extra=()):
    net = Net(input_shape=(8, 6, 1), seed=4, dtype=dtype)
    net.add(Convolutional(3, 3, pad=1, activation="relu"))
    net.add(MaxPooling(2))
    net.add(Convolutional(4, (3, 2), pad="same", activation="relu"))
    for layer in extra:
        net.add(layer)
    net.add(Flatten())
    net.add(Dense(outputs, activation=activation))
    net.compile(optimizer="adam", loss=loss)
    return net


def data(rows=70, outputs=3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 8, 6, 1))
    return x, rng.integers(0, outputs, rows)


def shared_files():
    """This process's shared-memory files: other processes on a shared machine make their own."""
    pattern = f"modularcnn-{os.getpid()}-*"
    return set(glob.glob("/dev/shm/" + pattern)) | set(
        glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), pattern)))


@pytest.mark.parametrize("loss, targets", [
    ("sparse_categorical_crossentropy", "ids"),
    ("categorical_crossentropy", "one_hot"),
    ("mse", "one_hot"),
    ("binary_crossentropy", "one_hot"),
])
def test_two_workers_train_like_one_process(loss, targets):
    x, ids = data()
    y = np.eye(3)[ids] if targets == "one_hot" else ids
    activation = "sigmoid" if loss == "binary_crossentropy" else "softmax"
    weights, histories = [], []
    for workers in (1, 2):
        net = small_net(loss, activation=activation)
        # About 56 training rows in batches of 16: the last, smaller batch is split too.
        history = net.fit(x, y, epochs=2, batch_size=16, verbose=0, workers=workers,
                          validation_split=0.2)
        weights.append(net.get_weights())
        histories.append(history.history)
    for one, two in zip(*weights):
        np.testing.assert_allclose(two, one, rtol=1e-9, atol=1e-12)
    for key in histories[0]:
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-9)


def test_frozen_layers_stay_frozen_with_workers():
    x, y = data()
    weights = []
    for workers in (1, 2):
        net = small_net()
        net.layers[0].trainable = False
        before = net.layers[0].params["kernel"].copy()
        net.fit(x, y, epochs=1, batch_size=16, verbose=0, workers=workers)
        np.testing.assert_array_equal(net.layers[0].params["kernel"], before)
        weights.append(net.get_weights())
    for one, two in zip(*weights):
        np.testing.assert_allclose(two, one, rtol=1e-9, atol=1e-12)


def test_more_workers_than_rows_in_the_last_batch_and_repeatable_runs():
    x, y = data(rows=9)
    runs = []
    for _ in range(2):
        net = small_net()
        net.fit(x, y, epochs=1, batch_size=4, verbose=0, workers=3)  # last batch: 1 row, 2 idle
        runs.append(net.get_weights())
    reference = small_net()
    reference.fit(x, y, epochs=1, batch_size=4, verbose=0, workers=1)
    for a, b, c in zip(*runs, reference.get_weights()):
        np.testing.assert_array_equal(a, b)   # deterministic for a given number of workers
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)


def test_weights_are_ordinary_arrays_after_fit_and_nothing_is_left_behind():
    before = shared_files()
    net = small_net(dtype="float32")
    x, y = data()
    net.fit(x, y, epochs=1, batch_size=16, verbose=0, workers=2)
    for layer in net.layers:
        for value in layer.params.values():
            assert value.flags.owndata and value.flags.writeable and value.dtype == np.float32
    assert shared_files() == before
    # Training continues in one process from where the workers left off.
    net.fit(x, y, epochs=1, batch_size=16, verbose=0, workers=1)


def test_dropout_and_residual_blocks_train_with_workers_repeatably():
    x, y = data()

    def run():
        net = small_net(extra=[Residual([Convolutional(4, 3, pad=1, activation="relu")]),
                               Dropout(0.3)], dtype="float32")
        history = net.fit(x, y, epochs=2, batch_size=16, verbose=0, workers=2)
        return net.get_weights(), history.history["loss"]

    (w1, loss1), (w2, loss2) = run(), run()
    assert loss1 == loss2 and all(np.isfinite(loss1))
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


class Doubling(Layer):
    def forward(self, x, training=False):
        return 2 * x

    def backward(self, dy):
        return 2 * dy


class Centring(Layer):
    """Subtracts the batch mean without taking it through batch_reducer: cannot be split."""

    samples_independent = False

    def forward(self, x, training=False):
        return x - x.mean(axis=0)

    def backward(self, dy):
        return dy - dy.mean(axis=0)


# Batch normalization used to be here: it now trains with workers (test_strategies.py).
@pytest.mark.parametrize("extra, message", [
    ([Centring()], "Centring.*needs statistics over the whole batch"),
    ([Doubling()], "custom Doubling"),
])
def test_networks_that_cannot_be_split_refuse_workers_but_train_on_auto(extra, message):
    x, y = data()
    net = small_net(extra=extra)
    with pytest.raises(ValueError, match=message):
        net.fit(x, y, epochs=1, batch_size=16, verbose=0, workers=2)
    assert resolve_workers(net, "auto", 64, 10_000) == 0
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)  # "auto": one process


@pytest.mark.parametrize("bad", [0, -2, 1.5, "many", True, None])
def test_bad_worker_counts_are_refused(bad):
    x, y = data()
    with pytest.raises(ValueError, match="workers must be 'auto' or a positive int"):
        small_net().fit(x, y, epochs=1, verbose=0, workers=bad)


def test_auto_uses_every_core_only_for_long_fits(monkeypatch):
    net = small_net()
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    assert resolve_workers(net, "auto", 64, parallel.AUTO_MIN_STEPS) == 2
    assert resolve_workers(net, "auto", 64, parallel.AUTO_MIN_STEPS - 1) == 0     # too short
    assert resolve_workers(net, "auto", 2 * parallel.AUTO_MIN_ROWS - 1, 10_000) == 0  # batch too small
    monkeypatch.setattr(parallel, "available_cores", lambda: 1)
    assert resolve_workers(net, "auto", 64, 10_000) == 0
    assert resolve_workers(net, 1, 64, 10_000) == 0
    assert resolve_workers(net, 3, 64, 1) == 3


def test_available_cores_follows_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert parallel.available_cores() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    assert parallel.available_cores() >= 1


# A stand-in worker: answers the handshake, serves `steps` steps, then dies.
FAKE_WORKER = """
import sys
sys.stdin.readline()
print("ready", flush=True)
for _ in range({steps}):
    sys.stdin.readline()
    print("done", flush=True)
sys.stdin.readline()
sys.exit(7)
"""


@pytest.mark.parametrize("command, message", [
    ([sys.executable, "-c", "import sys; sys.exit(3)"], "worker 0 exited unexpectedly with code 3"),
    ([sys.executable, "-c", FAKE_WORKER.format(steps=2)], "exited unexpectedly with code 7"),
])
def test_a_dying_worker_raises_and_keeps_the_weights(monkeypatch, command, message):
    x, y = data()
    net = small_net()
    before = net.get_weights()
    monkeypatch.setattr(transport, "WORKER_COMMAND", command)
    with pytest.raises(WorkerError, match=message):
        net.fit(x, y, epochs=1, batch_size=16, verbose=0, workers=2)
    for layer in net.layers:
        for value in layer.params.values():
            assert value.flags.owndata
    assert len(net.get_weights()) == len(before)


def test_a_worker_error_is_reported_with_its_message(monkeypatch):
    x, y = data()
    net = small_net()
    command = [sys.executable, "-c", "import sys, json; sys.stdin.readline(); "
               "print('error ' + json.dumps('ZeroDivisionError: simulated'), flush=True)"]
    monkeypatch.setattr(transport, "WORKER_COMMAND", command)
    with pytest.raises(WorkerError, match="worker 0 failed: ZeroDivisionError: simulated"):
        net.fit(x, y, epochs=1, batch_size=16, verbose=0, workers=2)


def test_workers_get_one_blas_thread_and_keep_their_freed_memory(monkeypatch):
    x, y = data()
    command = [sys.executable, "-c", "import os, sys, json; sys.stdin.readline(); "
               "names = ('OPENBLAS_NUM_THREADS', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_'); "
               "print('error ' + json.dumps(' '.join(os.environ[n] for n in names)), flush=True)"]
    monkeypatch.setattr(transport, "WORKER_COMMAND", command)
    with pytest.raises(WorkerError, match=f"failed: 1 {32 * 2**20} {256 * 2**20}$"):
        small_net().fit(x, y, epochs=1, batch_size=16, verbose=0, workers=2)


class InterruptAt(Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.step:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to itself")
def test_ctrl_c_stops_after_the_batch_with_workers(capsys):
    x, y = data(rows=200)
    net = small_net()
    history = net.fit(x, y, epochs=3, batch_size=16, verbose=0, workers=2,
                      callbacks=[InterruptAt(2)])
    assert history.interrupted
    assert "Interrupted: stopped after batch 3/13 of epoch 1" in capsys.readouterr().out
    assert all(value.flags.owndata for layer in net.layers for value in layer.params.values())


def test_shared_arrays_fall_back_to_the_temporary_folder_when_dev_shm_is_small(monkeypatch, tmp_path):
    from modularcnn.training import shared

    class Tiny:
        f_bavail, f_frsize = 1, 4096

    monkeypatch.setattr(shared.os, "statvfs", lambda path: Tiny())
    monkeypatch.setattr(shared.tempfile, "tempdir", str(tmp_path))
    block = shared.SharedArrays.create([("a", (1000, 10), np.float32), ("b", (3,), np.int64)])
    try:
        assert block.path.startswith(str(tmp_path))
        block["a"][:] = 1.5
        other = shared.SharedArrays.attach(block.path, block.specs)
        assert other["a"].sum() == 15000 and other["b"].tolist() == [0, 0, 0]
        other["b"][1] = 7
        assert block["b"][1] == 7       # one block of memory, seen by both mappings
        other.close()
    finally:
        block.close()
    assert not list(tmp_path.iterdir())
