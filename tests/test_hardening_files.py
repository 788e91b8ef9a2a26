"""Saving and loading under hostile paths (issue 14 items 1, 8, 13, 14): special files refused,
symlinks written through, write-protected files kept, errors name the user's path, a full disk gives
one clear error, a FIFO never blocks a load, garbage .npy never suggests unpickling."""

import errno
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from modularcnn import Net, load_model
from modularcnn.errors import ArgumentError
from modularcnn.layers import Dense


def tiny_net():
    net = Net(input_shape=(3,), seed=0)
    net.add(Dense(2))
    return net


def test_save_refuses_a_directory_a_fifo_and_a_device(tmp_path):
    net = tiny_net()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path, kind in ((tmp_path, "directory"), (fifo, "FIFO"), ("/dev/null", "character device")):
        with pytest.raises(ArgumentError, match=kind):
            net.save(path)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert os.listdir(tmp_path) == ["pipe"]  # no temporary file left behind


def test_save_to_a_symlink_writes_its_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "real.h5"
    link = tmp_path / "link.h5"
    target.write_bytes(b"old")
    link.symlink_to(target)
    net = tiny_net()
    net.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(load_model(target).get_weights()[0], net.get_weights()[0])


def test_save_over_a_write_protected_file_is_a_permission_error(tmp_path):
    path = tmp_path / "kept.h5"
    path.write_bytes(b"precious")
    path.chmod(0o444)
    with pytest.raises(PermissionError) as caught:
        tiny_net().save(path)
    assert caught.value.filename == str(path)
    assert path.read_bytes() == b"precious"


def test_save_errors_name_the_users_path_and_empty_is_refused(tmp_path):
    with pytest.raises(ArgumentError, match="non-empty"):
        tiny_net().save("")
    missing = tmp_path / "no" / "such" / "folder" / "m.h5"
    with pytest.raises(FileNotFoundError) as caught:
        tiny_net().save(missing)
    assert caught.value.filename == str(missing)


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                             str(mount)], capture_output=True).returncode:
        pytest.skip("needs root and permission to mount a small tmpfs")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.fuzz  # a fault test of the fuzz suite (tests/test_fuzz.py); skips without a tmpfs
def test_a_full_disk_gives_one_clear_error_and_keeps_the_old_file(small_tmpfs):
    path = small_tmpfs / "model.h5"
    path.write_bytes(b"old model")
    net = Net(input_shape=(200,), seed=0)
    net.add(Dense(200))  # 160 KB of float32 weights: larger than the 64 KB file system
    with pytest.raises(OSError) as caught:
        net.save(path)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(path)
    assert "\n" not in str(caught.value) and ".tmp" not in str(caught.value)
    assert path.read_bytes() == b"old model"


def test_load_model_on_a_fifo_returns_an_error_instead_of_blocking(tmp_path):
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    code = ("import modularcnn, sys\n"
            f"try:\n    modularcnn.load_model({str(fifo)!r})\n"
            "except ValueError as e:\n    print('refused:', e); sys.exit(0)\n"
            "sys.exit(1)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "regular" in done.stdout  # refused as not a regular file


def test_garbage_npy_never_suggests_allow_pickle(tmp_path):
    path = tmp_path / "digits.npy"
    path.write_bytes(b"garbage")
    tiny = tmp_path / "m.h5"
    net = Net(input_shape=(28, 28, 1), seed=0)
    from modularcnn.layers import Flatten
    net.add(Flatten())
    net.add(Dense(10, activation="softmax"))
    net.save(tiny)
    done = subprocess.run([sys.executable, "-m", "modularcnn.cli", "predict", str(tiny), str(path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode != 0
    assert "allow_pickle" not in done.stdout + done.stderr
    assert "digits.npy" in done.stderr


@pytest.mark.parametrize("pixels", [np.array([-1], np.int16), np.array([300], np.int16),
                                    np.array([2.0], np.float32), np.array([np.nan], np.float32)])
def test_cli_predict_refuses_pixels_outside_the_documented_range(tmp_path, pixels):
    from modularcnn.layers import Flatten
    net = Net(input_shape=(2, 2, 1), seed=0)
    net.add(Flatten())
    net.add(Dense(2, activation="softmax"))
    net.save(tmp_path / "m.h5")
    images = np.zeros((1, 2, 2), pixels.dtype)
    images[0, 1, 0] = pixels[0]
    np.save(tmp_path / "x.npy", images)
    done = subprocess.run([sys.executable, "-m", "modularcnn.cli", "predict", str(tmp_path / "m.h5"),
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode != 0
    assert "must lie in" in done.stderr and "index (0, 1, 0)" in done.stderr
