"""Training strategies: synchronised batch norm, the options and plan in the workers, the persistent
pool, and the pool's hardening (stopped workers, caps, nothing left behind)."""

import gc
import glob
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from modularcnn import Net
from modularcnn.layers import (
    BatchNormalization,
    Convolutional,
    Dense,
    Flatten,
    MaxPooling,
    Residual,
)
from modularcnn.training import strategies
from modularcnn.training.strategies import LocalWorkers, SingleProcess, pool_of, policy
from tests.strategy_parts import HalfMeanSquaredError, Halving

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bn_net(seed=3):
    net = Net(input_shape=(8, 6, 2), seed=seed, dtype="float64")
    net.add(Convolutional(4, 3, pad=1))
    net.add(BatchNormalization(momentum=0.8))
    net.add(MaxPooling(2))
    net.add(Residual([Convolutional(4, 3, pad=1), BatchNormalization(momentum=0.7)]))
    net.add(Flatten())
    net.add(Dense(5))
    net.add(BatchNormalization())
    net.add(Dense(3, activation="softmax"))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return net


def data(rows=80):
    rng = np.random.default_rng(1)
    return rng.standard_normal((rows, 8, 6, 2)) * 2 + 1, rng.integers(0, 3, rows)


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return "zombie" not in status.read()
    except FileNotFoundError:
        return False


def shared_files(pid=None):
    """The shared-memory files of process ``pid`` (this one by default): other processes on a shared
    machine make their own."""
    pattern = f"modularcnn-{os.getpid() if pid is None else pid}-*"
    return set(glob.glob("/dev/shm/" + pattern)) | set(
        glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), pattern)))


def test_batch_norm_trains_with_two_workers_like_one_process():
    x, y = data()
    results = []
    for workers in (1, 2):
        net = bn_net()
        net.fit(x, y, epochs=2, batch_size=8, verbose=0, workers=workers, shuffle=False)  # 20 steps
        results.append(net)
    one, two = (net.get_weights() for net in results)
    for a, b in zip(one, two):   # moving statistics included
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-9)
    moving = [layer.params["moving_variance"] for layer in results[1].layers
              if isinstance(layer, BatchNormalization)]
    assert all(not np.allclose(m, 1) for m in moving)  # they did move
    strategies.close_pool(results[1])


def test_a_workers_network_has_the_parents_plan_and_outputs():
    net = Net(input_shape=(10, 8, 1), seed=2, dtype="float64")
    net.add(Convolutional(3, 3, pad=1, activation="relu"))
    net.add(MaxPooling(2))
    net.add(Convolutional(6, 3, pad=1, activation="relu"))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    net.compile(loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 10, 8, 1)), rng.integers(0, 3, 6)
    from modularcnn.training.replica import plan_kinds

    for fused in (True, False):
        net.fusion = fused
        expected = net.forward(x, training=True)
        with LocalWorkers(2).open(net, 6, y[:1]) as step:
            _, outputs = step(x, y)
        np.testing.assert_allclose(outputs, expected, rtol=1e-12, atol=1e-14)
        plans = pool_of(net).plans()
        assert plans == [plan_kinds(net)] * 2
        kinds = set(plans[0])
        assert ("ConvReluPool" in " ".join(kinds)) is fused, kinds  # net.fusion reached the workers
    strategies.close_pool(net)


def test_two_fits_reuse_the_workers_and_deleting_the_network_stops_them():
    x, y = data()
    before = shared_files()
    net = bn_net()
    net.fit(x, y, epochs=1, batch_size=16, verbose=0, workers=2)
    pids = pool_of(net).pids
    net.fit(x, y, epochs=1, batch_size=16, verbose=0, workers=2)
    net.train_on_batch(x[:8], y[:8])
    assert pool_of(net).pids == pids and all(alive(pid) for pid in pids)
    assert all(v.flags.owndata for layer in net.layers for v in layer.params.values())
    del net
    gc.collect()
    assert not any(alive(pid) for pid in pids)
    assert shared_files() == before


def test_custom_layers_and_losses_from_a_module_train_with_workers():
    x, y = data(40)
    weights = []
    for workers in (1, 2):
        net = Net(input_shape=(8, 6, 2), seed=5, dtype="float64")
        net.add(Flatten())
        net.add(Halving())
        net.add(Dense(3))
        net.compile(optimizer="sgd", loss=HalfMeanSquaredError())
        net.fit(x, np.eye(3)[y], epochs=1, batch_size=10, verbose=0, workers=workers)
        if workers == 2:
            assert pool_of(net) is not None
            strategies.close_pool(net)
        weights.append(net.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(b, a, rtol=1e-10)


def test_strategy_argument_names_and_instances():
    x, y = data(32)
    net = bn_net()
    net.fit(x, y, epochs=1, batch_size=16, verbose=0, strategy="single")
    assert pool_of(net) is None
    net.fit(x, y, epochs=1, batch_size=16, verbose=0, strategy=LocalWorkers(2))
    assert pool_of(net).size == 2
    strategies.close_pool(net)
    with pytest.raises(ValueError, match="strategy must be a Strategy or one of"):
        net.fit(x, y, verbose=0, strategy="mpi-please")
    with pytest.raises(ValueError, match="not both"):
        net.fit(x, y, verbose=0, strategy=SingleProcess(), workers=2)


def test_worker_counts_are_capped(monkeypatch):
    monkeypatch.setattr(policy, "available_cores", lambda: 2)
    monkeypatch.setattr(policy.os, "cpu_count", lambda: 2)
    x, y = data(16)
    net = bn_net()
    with pytest.raises(ValueError, match="workers=9 is more than this machine can run usefully: at most 8"):
        net.fit(x, y, epochs=1, verbose=0, workers=9)
    assert pool_of(net) is None
    net.fit(x, y, epochs=1, batch_size=3, verbose=0, workers=5)  # never more workers than rows
    assert pool_of(net).size == 3
    strategies.close_pool(net)


def run_child(script, timeout=90):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


CHILD_SETUP = """
    import os, signal, sys, threading, time
    import numpy as np
    from modularcnn import Net
    from modularcnn.callbacks import Callback
    from modularcnn.layers import Dense, Flatten
    from modularcnn.training import transport
    from modularcnn.training.strategies import pool_of
    net = Net(input_shape=(6, 4, 1), seed=1, dtype="float64")
    net.add(Flatten()); net.add(Dense(3, activation="softmax"))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((400, 6, 4, 1)), rng.integers(0, 3, 400)
"""


@pytest.mark.fuzz  # a fault test of the fuzz suite (tests/test_fuzz.py)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and SIGSTOP")
def test_a_stopped_worker_raises_instead_of_blocking_forever():
    script = CHILD_SETUP + """
    transport.SILENCE_SECONDS = 2
    class Stop(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.pid = pool_of(self.model).pids[0]
                os.kill(self.pid, signal.SIGSTOP)
    stop = Stop()
    try:
        net.fit(x, y, epochs=5, batch_size=8, verbose=0, workers=2, callbacks=[stop])
    except transport.WorkerTimeout as error:
        print("timeout:", error)
    time.sleep(0.2)
    print("stopped worker gone:", not os.path.exists(f"/proc/{stop.pid}"))
    """
    done = run_child(script)
    assert "timeout: worker 0" in done.stdout and "sent nothing for 2 s" in done.stdout, done.stderr
    assert "stopped worker gone: True" in done.stdout


@pytest.mark.fuzz
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and SIGSTOP")
def test_ctrl_c_gets_out_of_a_step_whose_worker_is_stopped():
    script = CHILD_SETUP + """
    class Stop(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                os.kill(pool_of(self.model).pids[1], signal.SIGSTOP)
                threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    try:
        net.fit(x, y, epochs=5, batch_size=8, verbose=0, workers=2, callbacks=[Stop()])
    except KeyboardInterrupt:
        print(f"out after {time.monotonic() - start:.1f} s; pool closed:", pool_of(net) is None)
    """
    done = run_child(script)
    assert "pool closed: True" in done.stdout, done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
@pytest.mark.parametrize("ending", ["exit", "sigint"])
def test_no_worker_or_shared_file_outlives_the_interpreter(ending):
    script = CHILD_SETUP + """
    net.fit(x, y, epochs=1, batch_size=8, verbose=0, workers=2)
    print("pids", *pool_of(net).pids, flush=True)
    if sys.argv[-1] == "sigint":
        os.kill(os.getpid(), signal.SIGINT)   # KeyboardInterrupt outside fit: the interpreter exits
        time.sleep(5)
    """
    env = dict(os.environ, PYTHONPATH=ROOT)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), ending], env=env,
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = child.communicate(timeout=90)
    pids = [int(p) for p in out.split("pids")[1].split()]
    if ending == "sigint":
        assert "KeyboardInterrupt" in err
    assert not any(alive(pid) for pid in pids)
    assert not shared_files(child.pid)


@pytest.mark.fuzz
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /dev/shm and SIGKILL")
def test_killing_the_training_process_during_worker_start_up_leaves_no_shared_file():
    import signal
    import time

    script = CHILD_SETUP + """
    net.fit(x, y, epochs=1, batch_size=8, verbose=0, workers=2)
    """
    env = dict(os.environ, PYTHONPATH=ROOT)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pattern = f"modularcnn-{child.pid}-*"
    deadline = time.monotonic() + 60
    while not glob.glob("/dev/shm/" + pattern) and not glob.glob(
            os.path.join(os.environ.get("TMPDIR", "/tmp"), pattern)) and time.monotonic() < deadline:
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)   # while the workers start (their handshake)
    child.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (glob.glob("/dev/shm/" + pattern) or glob.glob(
            os.path.join(os.environ.get("TMPDIR", "/tmp"), pattern))):
        time.sleep(0.1)
    assert not glob.glob("/dev/shm/" + pattern)
    assert not glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), pattern))


def test_auto_uses_a_running_pool_for_a_short_fit(monkeypatch):
    monkeypatch.setattr(policy, "available_cores", lambda: 2)
    x, y = data(64)
    net = bn_net()
    assert policy.resolve_workers(net, "auto", 32, 2) == 0            # too short to start workers
    net.fit(x, y, epochs=1, batch_size=32, verbose=0, workers=2)
    assert policy.resolve_workers(net, "auto", 32, 2) == 2            # ... but they are running
    assert isinstance(policy.choose_strategy(net, None, "auto", 32, 2), LocalWorkers)
    strategies.close_pool(net)
    assert pool_of(net) is None and policy.resolve_workers(net, "auto", 32, 2) == 0
