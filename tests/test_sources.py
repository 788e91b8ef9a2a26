"""fit/evaluate/predict on data that is not one in-memory float array: memmaps, HDF5, generators,
Sequences, image folders; sample and class weights."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from modularcnn import DataError, Net
from modularcnn.datasets import mnist
from modularcnn.layers import Dense, Flatten
from modularcnn.utils import PyDataset, Sequence


def mlp(seed=0, shape=(6,), classes=3):
    net = Net(input_shape=shape, seed=seed)
    if len(shape) > 1:
        net.add(Flatten())
    net.add(Dense(8, activation="relu"))
    net.add(Dense(classes, activation="softmax"))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return net


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 6)).astype(np.uint8), rng.integers(0, 3, n)


def same_weights(a, b):
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


class Batches(Sequence):
    def __init__(self, x, y, batch_size=32, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[rows], self.y[rows]


@pytest.mark.parametrize("shuffle", [True, False, "batch"])
def test_memmap_and_hdf5_train_exactly_like_the_float_array(tmp_path, shuffle):
    x, y = data()
    memmap = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=x.shape)
    memmap[:] = x
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = x
    reference = mlp()
    reference.fit(x.astype(np.float32), y, epochs=2, batch_size=16, shuffle=shuffle,
                  validation_split=0.25, verbose=0)
    on_memmap = mlp()
    on_memmap.fit(memmap, y, epochs=2, batch_size=16, shuffle=shuffle, validation_split=0.25,
                  verbose=0)
    same_weights(reference, on_memmap)
    with h5py.File(tmp_path / "x.h5", "r") as f:
        on_hdf5 = mlp()
        on_hdf5.fit(f["x"], y, epochs=2, batch_size=16, shuffle=shuffle, validation_split=0.25,
                    verbose=0)
        same_weights(reference, on_hdf5)
        np.testing.assert_array_equal(on_hdf5.predict(f["x"]), reference.predict(x))


def test_closed_hdf5_file_is_refused_before_training(tmp_path):
    x, y = data()
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = x
        dataset = f["x"]
    net = mlp()
    before = net.get_weights()
    with pytest.raises(DataError, match="file is closed"):
        net.fit(dataset, y, verbose=0)
    same_weights_list(before, net.get_weights())


def same_weights_list(a, b):
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_bad_generators_and_sequences_raise_before_any_update():
    x, y = data()
    net = mlp()
    before = net.get_weights()

    def wrong_shape():
        yield x[:8, :5], y[:8]

    def wrong_dtype():
        yield x[:8].astype(str), y[:8]

    def no_targets():
        yield x[:8]

    with pytest.raises(DataError, match=r"batch 1 of the generator: expected x of shape \(n, 6\)"):
        net.fit(wrong_shape(), steps_per_epoch=1, verbose=0)
    with pytest.raises(DataError, match="must be numeric"):
        net.fit(wrong_dtype(), steps_per_epoch=1, verbose=0)
    with pytest.raises(DataError, match="without y"):
        net.fit(no_targets(), verbose=0)
    with pytest.raises(DataError, match="__len__ 0"):
        net.fit(Batches(x[:0], y[:0]), verbose=0)
    with pytest.raises(ValueError, match="do not pass y"):
        net.fit(Batches(x, y), y, verbose=0)
    same_weights_list(before, net.get_weights())


def test_generator_sequence_and_workers_agree_with_arrays():
    x, y = data()
    xf = x.astype(np.float32)
    reference = mlp()
    reference.fit(xf, y, batch_size=16, shuffle=False, epochs=2, verbose=0)

    def batches():
        while True:
            for k in range(0, 64, 16):
                yield xf[k:k + 16], y[k:k + 16]

    on_generator = mlp()
    on_generator.fit(batches(), steps_per_epoch=4, epochs=2, verbose=0)
    same_weights(reference, on_generator)
    for options in ({}, {"workers": 3}, {"workers": 2, "use_multiprocessing": True}):
        on_sequence = mlp()
        on_sequence.fit(Batches(xf, y, 16, **options), shuffle=False, epochs=2, verbose=0)
        same_weights(reference, on_sequence)
    assert PyDataset is Sequence
    np.testing.assert_allclose(on_sequence.predict(Batches(xf, y, 16)), reference.predict(xf))
    assert reference.evaluate(Batches(xf, y, 16), return_dict=True) == pytest.approx(
        reference.evaluate(xf, y, return_dict=True))


def test_sample_weight_is_keras_weighted_mean_and_class_weight_maps_classes():
    x, y = data()
    xf = x.astype(np.float32) / 255
    weights = np.random.default_rng(1).uniform(0, 2, len(x))
    net = mlp()
    outputs = net.predict(xf)
    per_sample = -np.log(outputs[np.arange(len(y)), y].astype(np.float64))
    result = net.evaluate(xf, y, sample_weight=weights, batch_size=64, return_dict=True)
    assert result["loss"] == pytest.approx(np.mean(weights * per_sample), rel=1e-5)

    # Doubling one sample's weight is training on it twice in a full batch (gradient is additive).
    a, b = mlp(), mlp()
    a.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    b.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    w = np.ones(len(x))
    w[:5] = 2
    a.fit(xf, y, batch_size=64, shuffle=False, sample_weight=w, verbose=0)
    b.fit(np.concatenate([xf, xf[:5]]), np.concatenate([y, y[:5]]), batch_size=69, shuffle=False,
          sample_weight=np.ones(69) * 69 / 64, verbose=0)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)

    c, d = mlp(), mlp()
    c.fit(xf, y, class_weight={0: 0.5, 2: 3.0}, shuffle=False, verbose=0)
    d.fit(xf, y, sample_weight=np.array([0.5, 1.0, 3.0])[y], shuffle=False, verbose=0)
    same_weights(c, d)
    with pytest.raises(ValueError, match="class ids in"):
        mlp().fit(xf, y, class_weight={3: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="not both"):
        mlp().fit(xf, y, class_weight={0: 1.0}, sample_weight=w, verbose=0)


def test_predict_writes_into_out_memmap(tmp_path):
    x, _ = data(50)
    net = mlp()
    out = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.float32, shape=(50, 3))
    result = net.predict(x, batch_size=7, out=out)
    assert result is out
    np.testing.assert_allclose(out, net.predict(x.astype(np.float32)), rtol=1e-6)
    with pytest.raises(ValueError, match="out must have shape"):
        net.predict(x, out=np.empty((49, 3), np.float32))


def _run(code, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_2gb_uint8_memmap_trains_in_bounded_memory_with_the_in_memory_weights(tmp_path):
    rows = (2 << 30) // 784  # 2 GiB of 28x28 uint8 images, a sparse file
    _run(f"""
        import resource, numpy as np
        from modularcnn import Net
        from modularcnn.layers import Dense, Flatten
        def net():
            n = Net(input_shape=(28, 28, 1), seed=3)
            n.add(Flatten()); n.add(Dense(10, activation="softmax"))
            n.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            return n
        x = np.lib.format.open_memmap(r"{tmp_path / 'x.npy'}", mode="w+", dtype=np.uint8,
                                      shape=({rows}, 28, 28, 1))
        y = (np.arange({rows}) % 10).astype(np.uint8)
        order = net().rng.permutation({rows})[:96]  # the rows the seeded shuffle will take
        x[np.sort(order)] = np.random.default_rng(0).integers(0, 256, (96, 28, 28, 1), dtype=np.uint8)
        x.flush()
        trained = net()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        trained.fit(x, y, batch_size=32, steps_per_epoch=3, verbose=0)
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert grown_mb < 300, grown_mb
        reference = net()
        reference.rng.permutation({rows})  # the same draws, then the same rows in memory
        reference.fit(np.asarray(x[order], np.float32), y[order], batch_size=32, shuffle=False,
                      verbose=0)
        for a, b in zip(trained.get_weights(), reference.get_weights()):
            np.testing.assert_array_equal(a, b)
        print(grown_mb)
    """, tmp_path)


def test_predict_on_100_batch_sequence_holds_a_few_batches(tmp_path):
    _run("""
        import resource, numpy as np
        from modularcnn import Net
        from modularcnn.layers import Dense, Flatten
        from modularcnn.utils import Sequence
        class Big(Sequence):   # 100 batches of 4 MB each
            def __len__(self): return 100
            def __getitem__(self, i): return np.full((256, 64, 64, 1), i / 100, np.float32)
        net = Net(input_shape=(64, 64, 1), seed=0)
        net.add(Flatten()); net.add(Dense(10, activation="softmax"))
        net.predict(Big()[0])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = net.predict(Big())
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert out.shape == (25600, 10)
        assert grown_mb < 10 * 4, grown_mb  # 100 batches would be 400 MB
    """, tmp_path)


@pytest.fixture(scope="module")
def mnist_small(mnist_dir):
    (x, y), (xt, yt) = mnist.load_data(path=mnist_dir)
    return (x[:3000], y[:3000]), (xt[:2000].astype(np.float32) / 255, yt[:2000])


def cnn():
    from modularcnn.layers import Convolutional
    net = Net(input_shape=(28, 28, 1), seed=1)
    net.add(Convolutional(16, 3, stride=2, pad="same", activation="relu"))
    net.add(Flatten())
    net.add(Dense(10, activation="softmax"))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return net


class Scaled(Sequence):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // 32

    def __getitem__(self, i):
        return self.x[i * 32:(i + 1) * 32] / np.float32(255), self.y[i * 32:(i + 1) * 32]


@pytest.mark.parametrize("kind", ["generator", "sequence", "hdf5"])
def test_mnist_learns_from_every_source(mnist_small, tmp_path, kind):
    (x, y), (xt, yt) = mnist_small
    net = cnn()
    if kind == "generator":
        def batches():
            while True:
                for k in range(0, 3000, 32):
                    yield x[k:k + 32] / np.float32(255), y[k:k + 32]
        net.fit(batches(), steps_per_epoch=94, epochs=2, verbose=0)
    elif kind == "sequence":
        net.fit(Scaled(x, y), epochs=2, verbose=0)
    else:
        with h5py.File(tmp_path / "m.h5", "w") as f:
            f["x"] = x.astype(np.float32) / 255
        with h5py.File(tmp_path / "m.h5", "r") as f:
            net.fit(f["x"], y, epochs=2, verbose=0)
    assert net.evaluate(xt, yt, return_dict=True)["accuracy"] >= 0.80  # 3,000 images, 2 epochs


def test_image_dataset_from_directory(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for name, value in (("cats", 30), ("dogs", 220)):
        (tmp_path / name).mkdir()
        for k in range(5):
            pixels = np.clip(value + rng.integers(-5, 5, (12, 10, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{k}.png")
    from modularcnn.utils import image_dataset_from_directory
    train, val = image_dataset_from_directory(tmp_path, image_size=(8, 8), batch_size=4, seed=1,
                                              validation_split=0.2, subset="both", verbose=False)
    assert train.class_names == ["cats", "dogs"] and len(train) == 2 and len(val) == 1
    images, labels = train[0]
    assert images.shape == (4, 8, 8, 3) and images.dtype == np.float32
    # dark images are cats (0), bright ones dogs (1)
    np.testing.assert_array_equal(images.mean(axis=(1, 2, 3)) > 128, labels == 1)
    assert not set(train.file_paths) & set(val.file_paths)
    gray = image_dataset_from_directory(tmp_path, image_size=(6, 5), color_mode="grayscale",
                                        label_mode="categorical", shuffle=False, verbose=False)
    images, labels = gray[0]
    assert images.shape == (10, 6, 5, 1)[:0] or images.shape == (min(10, 32), 6, 5, 1)
    assert labels.shape == (10, 2)
    net = Net(input_shape=(8, 8, 3), seed=0)
    net.add(Flatten())
    net.add(Dense(2, activation="softmax"))
    net.fit(train, validation_data=val, epochs=1, verbose=0)


def test_prefetch_timing_script_runs(tmp_path):
    """scripts/prefetch_timing.py (the README's prefetching figures) runs and reports every row."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(root / "scripts" / "prefetch_timing.py"), "--batches",
                           "3", "--batch-size", "4", "--repeat", "1", "--sleep-ms", "1"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-2000:]
    for row in ("compute alone", "loading alone", "prefetching", "no read-ahead"):
        assert row in done.stdout


def test_inputs_whose_sum_overflows_are_finite_and_nan_or_inf_is_refused():
    """The finiteness check sums the input once; a sum that overflows from finite values (float32
    inputs near its largest value) must not be taken for an infinite input."""
    net = Net(input_shape=(6,), seed=0, dtype="float64")
    net.add(Dense(3, activation="softmax"))
    big = np.full((4, 6), np.finfo(np.float32).max / 2, dtype=np.float32)
    with np.errstate(over="ignore"):
        assert np.isinf(big.sum())
    assert net.predict(big).shape == (4, 3)
    for bad in (np.inf, -np.inf, np.nan):
        x = big.copy()
        x[2, 5] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            net.predict(x)
        with pytest.raises(ValueError, match="NaN or inf"):
            net.predict(np.where(np.isfinite(x), 0, x).astype(np.float32))


def test_predict_without_callbacks_and_with_them_gives_the_same_outputs():
    from modularcnn.callbacks import Callback

    class Count(Callback):
        batches = 0

        def on_predict_batch_end(self, batch, logs=None):
            Count.batches += 1

    net = mlp()
    x, _ = data(50)
    plain = net.predict(x, batch_size=16)
    np.testing.assert_array_equal(net.predict(x, batch_size=16, callbacks=[Count()]), plain)
    assert Count.batches == 4
    np.testing.assert_array_equal(net.predict(x[:1]), plain[:1])
