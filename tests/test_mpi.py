"""MPI data-parallel training under a real ``mpirun -n 2`` (the ``mpi`` extra; skips cleanly without it):
the weights after a few steps equal one process on the same global batches (float64, 1e-10), with and
without batch normalization, and a killed rank ends the job with an error instead of a hang."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")
MPIRUN = shutil.which("mpirun") or shutil.which("mpirun", path=os.path.dirname(sys.executable))
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH")
REPO_ROOT = Path(__file__).resolve().parent.parent

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


def test_a_killed_rank_ends_the_job_with_an_error(tmp_path):
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


def test_cli_trains_under_mpirun_and_rank_zero_alone_saves(tmp_path, mnist_dir):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", MODULARCNN_DATA=str(mnist_dir.parent))
    save = tmp_path / "lenet.h5"
    done = subprocess.run([MPIRUN, "-n", "2", sys.executable, "-m", "modularcnn.cli", "train",
                           "--distributed", "mpi", "--num-examples", "1500", "--test-examples", "500",
                           "--epochs", "1", "--save", str(save)],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Test accuracy:") == 1 and done.stdout.count("Saved the model") == 1
    accuracy = float(done.stdout.split("Test accuracy: ")[1].split()[0])
    assert accuracy > 0.5
    assert sorted(os.listdir(tmp_path)) == ["lenet.h5"]
