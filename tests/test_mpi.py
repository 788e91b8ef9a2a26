"""MPI data-parallel training under a real ``mpirun -n 2`` (the ``mpi`` extra; skips cleanly without it):
the weights after a few steps equal one process on the same global batches (float64, 1e-10), with and
without batch normalization, and a killed rank ends the job with an error instead of a hang."""

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")
MPIRUN = shutil.which("mpirun") or shutil.which("mpirun", path=os.path.dirname(sys.executable))
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH")
REPO_ROOT = Path(__file__).resolve().parent.parent


def _mapped_files():
    """Every file some live process has mapped (from /proc/*/maps)."""
    mapped = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            mapped.update(line.split(None, 5)[5].strip() for line in maps.read_text().splitlines()
                          if line.count(" ") >= 5 and "/dev/shm/" in line)
        except (OSError, IndexError):
            pass  # a process that ended while it was read
    return mapped


@pytest.fixture
def aborted_job_cleanup():
    """MPICH leaves its shared-memory segment (/dev/shm/mpich_shm_*, ~2 MB) behind when a job is
    aborted or a rank killed; remove the ones a test's job left (new, and mapped by no process)."""
    before = set(glob.glob("/dev/shm/mpich_shm_*"))
    yield
    mapped = _mapped_files()
    for path in set(glob.glob("/dev/shm/mpich_shm_*")) - before:
        if path not in mapped:
            with contextlib.suppress(OSError):
                os.unlink(path)

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from modularcnn import Net
    from modularcnn.layers import BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D

    def build(batch_norm):
        net = Net(input_shape=(9, 8, 2), seed=5, dtype="float64")
        net.add(Conv2D(3, 3, padding="same", activation=None if batch_norm else "relu"))
        if batch_norm:
            net.add(BatchNormalization(momentum=0.8))
        net.add(MaxPooling2D(2))
        net.add(Flatten())
        net.add(Dense(4, activation="softmax"))
        net.compile(optimizer="adam", loss="cross_entropy")
        return net

    def data():
        rng = np.random.default_rng(0)
        return rng.normal(size=(70, 9, 8, 2)), rng.integers(0, 4, 70)

    if __name__ == "__main__":
        batch_norm, out, kill = sys.argv[1] == "bn", sys.argv[2], sys.argv[3] == "kill"
        net = build(batch_norm)
        x, y = data()
        callbacks = []
        if kill:
            import os, signal
            from modularcnn.callbacks import Callback
            from mpi4py import MPI

            class KillRankOne(Callback):
                def on_train_batch_end(self, batch, logs=None):
                    if MPI.COMM_WORLD.Get_rank() == 1 and batch == 1:
                        os.kill(os.getpid(), signal.SIGKILL)
            callbacks = [KillRankOne()]
        history = net.fit(x, y, epochs=2, batch_size=16, strategy="mpi", verbose=1,
                          callbacks=callbacks)
        from mpi4py import MPI
        if MPI.COMM_WORLD.Get_rank() == 0:
            np.savez(out, *net.get_weights(), loss=history.history["loss"])
""")


def run_mpi(tmp_path, batch_norm, kill=False, ranks=2):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "weights.npz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([MPIRUN, "-n", str(ranks), sys.executable, str(script),
                           "bn" if batch_norm else "plain", str(out), "kill" if kill else "run"],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    return done, out


def single_process(batch_norm):
    namespace = {"__name__": "reference"}
    exec(compile(SCRIPT, "train.py", "exec"), namespace)
    net = namespace["build"](batch_norm)
    x, y = namespace["data"]()
    history = net.fit(x, y, epochs=2, batch_size=16, strategy="single", verbose=0)
    return net, history


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batch_norm"])
def test_two_ranks_match_one_process(batch_norm, tmp_path):
    done, out = run_mpi(tmp_path, batch_norm)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Epoch 1/2 - ") == 1  # rank 0 alone prints progress
    stored = np.load(out)
    net, history = single_process(batch_norm)
    weights = net.get_weights()
    assert len(weights) == len(stored.files) - 1
    for k, expected in enumerate(weights):  # moving statistics included
        np.testing.assert_allclose(stored[f"arr_{k}"], expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stored["loss"], history.history["loss"], rtol=1e-10)


def test_a_killed_rank_ends_the_job_with_an_error(tmp_path, aborted_job_cleanup):
    done, out = run_mpi(tmp_path, batch_norm=True, kill=True)
    assert done.returncode != 0
    assert not out.exists()


def test_missing_mpi4py_names_the_extra(monkeypatch):
    import builtins

    from modularcnn.training.strategies import mpi

    real_import = builtins.__import__

    def no_mpi(name, *args, **kwargs):
        if name.startswith("mpi4py"):
            raise ImportError("No module named 'mpi4py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpi)
    with pytest.raises(ImportError, match=r"modularcnn\[mpi\]"):
        mpi.MPIStrategy()


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["ranks", "ranks-with-workers"])
def test_cli_trains_under_mpirun_and_rank_zero_alone_saves(tmp_path, mnist_dir, workers):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", MODULARCNN_DATA=str(mnist_dir.parent))
    save = tmp_path / "lenet.h5"
    done = subprocess.run([MPIRUN, "-n", "2", sys.executable, "-m", "modularcnn.cli", "train",
                           "--distributed", "mpi", "--num-examples", "1500", "--test-examples", "500",
                           "--epochs", "1", "--save", str(save), *workers],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Test accuracy:") == 1 and done.stdout.count("Saved the model") == 1
    accuracy = float(done.stdout.split("Test accuracy: ")[1].split()[0])
    assert accuracy > 0.5
    assert sorted(os.listdir(tmp_path)) == ["lenet.h5"]


# -- A configurable job: what a user script under mpirun does -------------------------------------

JOB = textwrap.dedent('''
    import json, os, sys, time
    import numpy as np
    import modularcnn
    from modularcnn import Net
    from modularcnn.callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint
    from modularcnn.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D

    def build():
        net = Net(input_shape=(9, 8, 2), seed=5, dtype="float64")
        net.add(Conv2D(3, 3, padding="same", activation=None))
        net.add(BatchNormalization(momentum=0.8))
        net.add(MaxPooling2D(2))
        net.add(Flatten())
        if DROPOUT:
            net.add(Dropout(0.3))
        net.add(Dense(4, activation="softmax"))
        net.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
        return net

    def data(rows):
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(rows, 9, 8, 2)), rng.integers(0, 4, rows)
        return x, y, rng.uniform(0.0, 3.0, rows)

    class Fail(Callback):
        """Raises on one rank at one batch (a rank that raises, not one that dies)."""
        def __init__(self, rank, batch):
            super().__init__()
            self.rank, self.batch = rank, batch
        def on_train_batch_end(self, batch, logs=None):
            if RANK == self.rank and batch == self.batch:
                raise ValueError(f"boom on rank {RANK}")

    class Started(Callback):
        """Marks the start of training in a file and makes steps slow enough to be interrupted."""
        def __init__(self, path):
            super().__init__()
            self.path = path
        def on_train_batch_end(self, batch, logs=None):
            if not os.path.exists(self.path):
                open(self.path, "w").close()
            time.sleep(0.02)

    def run(config, strategy):
        global DROPOUT
        DROPOUT = not config.get("workers")  # local workers draw their own masks
        x, y, w = data(config.get("rows", 70))
        net = modularcnn.load_model(config["load"]) if config.get("load") else build()
        batch_size = config.get("rank1_batch_size", 16) if RANK == 1 else 16
        kwargs = dict(epochs=config.get("epochs", 2), batch_size=batch_size,
                      initial_epoch=config.get("initial_epoch", 0), verbose=config.get("verbose", 0))
        if config.get("weighted"):
            kwargs["sample_weight"] = w
        if config.get("workers") and strategy == "mpi":
            kwargs["workers"] = config["workers"]
        if config.get("validation") == "split":
            kwargs["validation_split"] = 0.25
        elif config.get("validation") == "data":
            xv, yv, wv = data(37)
            kwargs["validation_data"] = (xv * 0.5, yv, wv) if config.get("weighted") else (xv * 0.5, yv)
            kwargs["validation_batch_size"] = 13
        callbacks = []
        if config.get("checkpoint"):
            callbacks.append(ModelCheckpoint(config["checkpoint"]))
        if config.get("csv"):
            callbacks.append(CSVLogger(config["csv"]))
        if config.get("early_stopping"):
            callbacks.append(EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0))
        if config.get("fail"):
            callbacks.append(Fail(*config["fail"]))
        if config.get("started"):
            callbacks.append(Started(config["started"]))
        history = net.fit(x, y, strategy=strategy, callbacks=callbacks, **kwargs)
        if config.get("save"):
            net.save(config["save"])
        return net, history

    if __name__ == "__main__":
        from mpi4py import MPI
        RANK = MPI.COMM_WORLD.Get_rank()
        config = json.loads(sys.argv[1])
        if config.get("rank_folders"):
            os.makedirs(f"rank{RANK}")
            os.chdir(f"rank{RANK}")  # relative paths: each rank's writes land in its own folder
        net, history = run(config, "mpi")
        from modularcnn.training.strategies import pool_of
        np.savez(config["out"] + f".rank{RANK}.npz", *net.get_weights(),
                 local_workers=pool_of(net).size if pool_of(net) else 0,
                 interrupted=history.interrupted, steps=net.optimizer.iterations,
                 **{f"log_{k}": v for k, v in history.history.items()})
    else:
        RANK = 0
    DROPOUT = True
''')


def job_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def start_job(tmp_path, config, ranks=2, **popen):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    config = {"out": str(tmp_path / "result"), **config}
    return subprocess.Popen([MPIRUN, "-n", str(ranks), sys.executable, str(script), json.dumps(config)],
                            cwd=tmp_path, env=job_env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)


def run_job(tmp_path, config, ranks=2, timeout=120):
    process = start_job(tmp_path, config, ranks)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def job_result(tmp_path, rank=0):
    with np.load(tmp_path / f"result.rank{rank}.npz") as stored:
        return {key: stored[key] for key in stored.files}


def one_process(config):
    namespace = {"__name__": "reference"}
    exec(compile(JOB, "job.py", "exec"), namespace)
    return namespace["run"](config, "single")


def assert_same_training(result, net, history, rtol=1e-10):
    weights = net.get_weights()
    assert len(weights) == len([k for k in result if k.startswith("arr_")])
    # atol: the convolution's bias before batch norm has a zero gradient, so it holds rounding noise
    # (~1e-12) that differs with the order of the sums.
    for k, expected in enumerate(weights):  # moving statistics included
        np.testing.assert_allclose(result[f"arr_{k}"], expected, rtol=rtol, atol=1e-10)
    assert sorted(k[4:] for k in result if k.startswith("log_")) == sorted(history.history)
    for key, values in history.history.items():
        np.testing.assert_allclose(result[f"log_{key}"], values, rtol=rtol, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("ranks, config", [
    (2, {"validation": "split"}),
    (2, {"validation": "data", "weighted": True}),
    # 65 rows in batches of 16: the last batch has one row, so ranks 1 and 2 compute none of it.
    (3, {"validation": "data", "rows": 65, "weighted": True}),
], ids=["2-ranks-validation-split", "2-ranks-sample-weight", "3-ranks-a-batch-of-one"])
def test_validation_weights_and_dropout_match_one_process(tmp_path, ranks, config):
    """Batch norm, dropout, sample weights and validation split across ranks: every rank's weights
    and logs (loss, accuracy and their val_ forms) equal one process's to 1e-10."""
    done = run_job(tmp_path, {**config, "epochs": 3}, ranks)
    assert done.returncode == 0, done.stderr[-3000:]
    net, history = one_process({**config, "epochs": 3})
    assert "val_loss" in history.history
    for rank in range(ranks):
        assert_same_training(job_result(tmp_path, rank), net, history)


def test_rank_zero_alone_writes_and_early_stopping_stops_every_rank(tmp_path):
    """The same script on both ranks: ModelCheckpoint, CSVLogger and net.save write in rank 0's
    folder only; EarlyStopping stops both ranks after the same epoch (no rank waits for another)."""
    config = {"rank_folders": True, "validation": "data", "epochs": 6, "early_stopping": True,
              "checkpoint": "ckpt-{epoch}.h5", "csv": "log.csv", "save": "final.h5"}
    done = run_job(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "rank1")) == []
    assert sorted(os.listdir(tmp_path / "rank0")) == ["ckpt-1.h5", "ckpt-2.h5", "final.h5", "log.csv"]
    first, second = job_result(tmp_path, 0), job_result(tmp_path, 1)
    assert len(first["log_loss"]) == len(second["log_loss"]) == 2  # stopped after epoch 2 everywhere
    assert int(first["steps"]) == int(second["steps"]) == 2 * 5
    assert (tmp_path / "rank0" / "log.csv").read_text().count("\n") == 3  # header and two epochs


def test_a_checkpoint_from_two_ranks_resumes_on_one_or_two(tmp_path):
    """Three epochs on 2 ranks, against epoch 1's checkpoint (written by 2 ranks) resumed for epochs
    2-3 under 1 rank and under 2: the same weights (the generator's state, which drives dropout and
    the shuffle, and the optimizer's travel in the file)."""
    config = {"validation": "data", "epochs": 3, "checkpoint": str(tmp_path / "ckpt-{epoch}.h5")}
    done = run_job(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    uninterrupted = job_result(tmp_path)
    for ranks in (1, 2):
        folder = tmp_path / f"resume{ranks}"
        folder.mkdir()
        resumed = {"validation": "data", "epochs": 3, "initial_epoch": 1,
                   "load": str(tmp_path / "ckpt-1.h5")}
        done = run_job(folder, resumed, ranks)
        assert done.returncode == 0, done.stderr[-3000:]
        result = job_result(folder)
        arrays = sorted(k for k in uninterrupted if k.startswith("arr_"))
        for key in arrays:
            np.testing.assert_allclose(result[key], uninterrupted[key], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(result["log_val_loss"], uninterrupted["log_val_loss"][1:], rtol=1e-10)


@pytest.mark.parametrize("failing", [1, 0], ids=["rank-1-raises", "rank-0-checkpoint-fails"])
def test_a_raising_rank_aborts_the_job_with_its_error(tmp_path, failing, aborted_job_cleanup):
    """An exception on one rank while the other waits in an all-reduce: the job ends (MPI_Abort) with
    the error and the rank that raised it, never a hang (the communicate timeout would fail it)."""
    if failing == 1:
        config, message = {"fail": [1, 2]}, "ValueError: boom on rank 1"
    else:
        (tmp_path / "blocker").write_text("a file, not a folder")
        config = {"checkpoint": str(tmp_path / "blocker" / "ckpt.h5")}  # only rank 0 writes: only it fails
        message = "blocker"
    done = run_job(tmp_path, config, timeout=60)
    assert done.returncode != 0
    assert f"modularcnn: MPI rank {failing} of 2 raised" in done.stderr, (done.stdout, done.stderr)
    assert message in done.stderr and "MPI_Abort" in done.stderr
    if failing == 1:  # rank 0, waiting in a collective, learns of it and says so too
        assert ("modularcnn: MPI rank 1 of 2 failed, so every rank stops (MPI_Abort): rank 1 raised "
                "ValueError: boom on rank 1") in done.stderr
    assert not list(tmp_path.glob("result.rank*.npz"))


def test_ctrl_c_on_mpirun_stops_every_rank_after_the_same_step(tmp_path):
    """SIGINT to mpirun (which passes it to every rank) while a script trains: fit returns on both
    ranks with history.interrupted after the same number of steps, and the script carries on."""
    started = tmp_path / "started"
    process = start_job(tmp_path, {"epochs": 1000, "started": str(started), "save": "final.h5"})
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    first, second = job_result(tmp_path, 0), job_result(tmp_path, 1)
    assert bool(first["interrupted"]) and bool(second["interrupted"])
    assert int(first["steps"]) == int(second["steps"]) > 0
    assert stdout.count("Interrupted: stopped after batch") == 1  # rank 0 alone says so
    for key in (key for key in first if key.startswith("arr_")):
        np.testing.assert_array_equal(first[key], second[key])  # no rank trained a step more
    assert (tmp_path / "final.h5").is_file()


def test_ctrl_c_on_mpirun_under_the_cli_saves_once(tmp_path, mnist_dir):
    """`mpirun -n 2 modularcnn train --distributed mpi --save`: SIGINT after the first checkpoint stops
    both ranks, rank 0 saves the final model once and the job exits with 130."""
    env = dict(job_env(), MODULARCNN_DATA=str(mnist_dir.parent))
    save = tmp_path / "lenet.h5"
    process = subprocess.Popen([MPIRUN, "-n", "2", sys.executable, "-m", "modularcnn.cli", "train",
                                "--distributed", "mpi", "--num-examples", "1000", "--val-examples",
                                "100", "--test-examples", "100", "--epochs", "100", "--save", str(save)],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 120
        while not save.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.05)
        first = save.stat().st_mtime_ns
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, (stdout[-2000:], stderr[-3000:])
    # fit's line and the CLI's, from rank 0 only
    assert stdout.count("Interrupted: stopped after") == stdout.count("Training interrupted") == 1
    assert stdout.count("Saved the model to") == 1 and "Test accuracy" not in stdout
    assert save.stat().st_mtime_ns > first
    from modularcnn import load_model
    assert load_model(save).predict(np.zeros((1, 28, 28), dtype=np.float32)).shape == (1, 10)
    assert sorted(os.listdir(tmp_path)) == ["lenet.h5"]


def test_local_workers_within_each_rank_match_one_process(tmp_path):
    """fit(strategy="mpi", workers=2) on 2 ranks: 4 processes share each batch (batch norm summed over
    all of them); 65 rows in batches of 16 leave rank 1 no row of the last batch. Weights and logs
    equal one process's."""
    config = {"validation": "data", "rows": 65, "workers": 2, "epochs": 2}
    done = run_job(tmp_path, config)
    assert done.returncode == 0, done.stderr[-3000:]
    net, history = one_process(config)
    for rank in range(2):
        result = job_result(tmp_path, rank)
        assert int(result["local_workers"]) == 2
        assert_same_training(result, net, history)


def test_local_workers_need_a_network_they_can_rebuild(tmp_path):
    script = tmp_path / "custom.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from modularcnn import Net
        from modularcnn.layers import Dense

        class Mine(Dense):  # defined in __main__: a worker process cannot import it
            pass

        net = Net(input_shape=(3,), seed=0)
        net.add(Mine(2, activation="softmax"))
        try:
            net.fit(np.zeros((8, 3)), np.zeros(8, dtype=int), strategy="mpi", workers=2, verbose=0)
        except ValueError as error:
            print("refused:", error)
    """))
    done = subprocess.run([MPIRUN, "-n", "1", sys.executable, str(script)], capture_output=True,
                          text=True, timeout=60, env=job_env(), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: strategy MPIStrategy(ranks=1, rank=0, local_workers=2) cannot train this " \
           "network: layer" in done.stdout


def test_ranks_that_train_different_things_all_raise_the_same_error(tmp_path):
    """A rank with another batch size would wait in collectives no other rank makes: every rank
    raises the same ValueError before the first step instead."""
    done = run_job(tmp_path, {"rank1_batch_size": 8}, timeout=60)
    assert done.returncode != 0
    assert done.stderr.count("ValueError: strategy='mpi': every rank must fit the same network") == 2
    assert "rank 1 has (batch size, trainable values, weights, target values per row, dtype bytes) " \
           "= (8, " in done.stderr
    assert "MPI_Abort" not in done.stderr  # raised on every rank alike: nobody waits, nothing aborts
