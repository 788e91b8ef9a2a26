"""Hardening of models, model files and data (issue 14 items 2, 3, 7, 9, 15, 16, 17): declared shapes
checked before anything is read, configs built without drawing weights, a layer in one network only,
IDX gzip bombs refused from the header, explicit dataset paths used or refused, inputs that train to
NaN named, frozen batch norm frozen, confusion matrices of uint8 labels."""

import numpy as np
import pytest

from modularcnn import metrics


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.uint64, np.bool_])
def test_confusion_matrix_of_small_unsigned_labels(dtype):
    # item 17: mnist.load_data() returns uint8 labels; .max(initial=-1) overflowed, i * K + j wrapped
    y_true = np.array([0, 1, 1, 0, 1], dtype=dtype)
    y_pred = np.array([0, 1, 0, 0, 1], dtype=np.int64)
    cm = metrics.confusion_matrix(y_true, y_pred)
    assert cm.dtype == np.int64 and cm.tolist() == [[2, 0], [1, 2]]


def test_confusion_matrix_with_many_classes_in_uint8_does_not_wrap():
    # 30 classes: 29 * 30 + 29 = 899 does not fit uint8
    y = np.arange(30, dtype=np.uint8)
    cm = metrics.confusion_matrix(y, y.astype(np.int8))
    np.testing.assert_array_equal(cm, np.eye(30, dtype=np.int64))
    cm = metrics.confusion_matrix(y, y[::-1].copy(), num_classes=30)
    assert cm.sum() == 30 and cm[0, 29] == 1


def test_readme_plotting_block_with_uint8_labels(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    from modularcnn import Net, plot_confusion_matrix
    from modularcnn.layers import Dense
    net = Net(input_shape=(4,), seed=0)
    net.add(Dense(3, activation="softmax"))
    net.compile()
    x = np.random.default_rng(0).random((12, 4)).astype(np.float32)
    y_test = (np.arange(12) % 3).astype(np.uint8)
    figure = plot_confusion_matrix(metrics.confusion_matrix(y_test, net.predict_classes(x)))
    assert figure is not None


def test_confusion_matrix_refuses_infinite_float_ids():
    with pytest.raises(ValueError, match="finite integer class ids"):
        metrics.confusion_matrix(np.array([0.0, np.inf]), np.array([0, 1]))


# ------------------------------------------------------------------------------------------------
# Items 2 and 3: model files and configs that declare more than they hold
# ------------------------------------------------------------------------------------------------

BOUNDED_PRELUDE = """
import resource, sys
import numpy, h5py, modularcnn
from modularcnn.errors import ModelFileError
def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize"):
            return int(line.split()[1]) * 1024
# Address space: what the imports took plus EXTRA MiB, so any attempt at gigabytes fails at once.
limit = vm_bytes() + EXTRA * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
"""


def run_bounded(body, timeout=120, extra_mib=600):
    """Run ``body`` in a fresh interpreter under RLIMIT_AS (imports + ``extra_mib``); returns stdout
    lines."""
    import subprocess
    import sys
    import textwrap
    prelude = BOUNDED_PRELUDE.replace("EXTRA", str(int(extra_mib)))
    result = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(body)],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def write_file_with(path, net, weights=None, config=None):
    """A well-formed, checksummed model file of ``net`` with its weights or config replaced."""
    from modularcnn.saving import hdf5_format, model_io
    hdf5_format.write_file(path, hdf5_format.FileContents(
        kind="model", weights=weights if weights is not None else model_io._weights_of(net),
        model_config=config if config is not None else net.get_config(),
        rng_state=model_io._network_rng_state(net)))


def dense_net(units=10, inputs=784):
    from modularcnn import Net
    from modularcnn.layers import Dense
    net = Net(input_shape=(inputs,), seed=0)
    net.add(Dense(units))
    return net


@pytest.mark.parametrize("shape", [(32768, 32768), (100000, 100000)])
def test_chunked_weight_declaring_gigabytes_is_refused_before_reading(tmp_path, shape):
    # item 2: a few-KB file declaring a chunked, compressed weight of 4 GiB / 40 GB (chunks never
    # written read as the fill value): refused from the header, in bounded memory.
    import h5py
    path = tmp_path / "bomb.h5"
    net = dense_net(units=4, inputs=3)
    net.save(path)
    with h5py.File(path, "r+") as file:
        del file["weights/dense/kernel"]
        file["weights/dense"].create_dataset("kernel", shape=shape, dtype="float32",
                                             chunks=(1024, 1024), compression="gzip")
    assert path.stat().st_size < 100_000
    lines = run_bounded(f"""
        from modularcnn.layers import Dense
        for call in ("load_model", "file_info", "load_weights"):
            try:
                if call == "load_model":
                    modularcnn.load_model({str(path)!r})
                elif call == "file_info":
                    modularcnn.saving.file_info({str(path)!r})
                else:
                    net = modularcnn.Net(input_shape=(3,))
                    net.add(Dense(4))
                    net.load_weights({str(path)!r})
            except ModelFileError as error:
                print(call, "refused:", error)
    """)
    assert len(lines) == 3, lines
    assert all("refused" in line and "weights/dense/kernel" in line for line in lines), lines
    assert all(("bomb" in line) or ("MAX_ARRAY_ELEMENTS" in line) for line in lines), lines


def test_declared_shapes_are_compared_with_the_config_before_any_data_is_read(tmp_path, monkeypatch):
    # item 2: a real (compressed) array of the wrong shape is refused from its header alone
    import h5py
    from modularcnn import load_model
    from modularcnn.errors import ModelFileError
    from modularcnn.saving import hdf5_format
    path = tmp_path / "wrong.h5"
    net = dense_net(units=4, inputs=3)
    net.save(path)
    with h5py.File(path, "r+") as file:
        del file["weights/dense/kernel"]
        file["weights/dense"].create_dataset("kernel", data=np.zeros((3000, 3000), np.float32),
                                             chunks=(500, 500), compression="gzip")
    reads = []
    original = hdf5_format._Reader.load
    monkeypatch.setattr(hdf5_format._Reader, "load",
                        lambda self, declared: reads.append(declared.shape) or original(self, declared))
    with pytest.raises(ModelFileError, match=r"kernel.*\(3000, 3000\).*expects shape \(3, 4\)"):
        load_model(path)
    assert (3000, 3000) not in reads


def test_config_declaring_a_huge_layer_is_refused_without_drawing_its_weights(tmp_path):
    # item 3: a valid, checksummed file whose config says Dense(2_000_000) after a 784-wide input
    # (1.6e9 values, 12 GB drawn in float64 before) but whose file holds a (784, 10) kernel
    for units in (2_000_000, 20_000_000, 10**9):
        net = dense_net()
        config = net.get_config()
        config["layers"][-1]["config"]["units"] = units
        write_file_with(tmp_path / f"config_{units}.h5", net, config=config)
    lines = run_bounded(f"""
        import os
        for name in sorted(os.listdir({str(tmp_path)!r})):
            try:
                modularcnn.load_model(os.path.join({str(tmp_path)!r}, name))
            except ModelFileError as error:
                print(name, "refused:", error)
    """)
    assert len(lines) == 3, lines
    by_units = {int(line.split("_")[1].split(".")[0]): line for line in lines}
    assert "in the file, but the layer expects shape (784, 2000000)" in by_units[2_000_000]
    for units in (20_000_000, 10**9):
        assert "MAX_ARRAY_ELEMENTS" in by_units[units]
    assert not any("memory" in line.lower() for line in lines), lines


def test_a_loaded_model_owns_plain_writeable_arrays_and_trains(tmp_path):
    # the placeholders the config is built with never survive a load
    from modularcnn import load_model
    net = dense_net(units=3, inputs=5)
    from modularcnn import losses
    net.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(1).random((8, 5)).astype(np.float32)
    y = np.arange(8) % 3
    net.fit(x, y, epochs=1, verbose=0)
    net.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    for layer in loaded.layers:
        for value in layer.params.values():
            assert value.flags.writeable and value.flags.c_contiguous and value.flags.owndata
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    loaded.fit(x, y, epochs=1, verbose=0)
    net.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


def test_initializers_draw_numpy_float64_streams():
    # seeded networks keep their initial weights: the draws are NumPy's rng.uniform / rng.normal
    from modularcnn import initializers
    for init, reference in (
        (initializers.RandomUniform(0.3), lambda rng: rng.uniform(-0.3, 0.3, size=(5, 7))),
        (initializers.RandomNormal(0.2, 1.5), lambda rng: rng.normal(1.5, 0.2, size=(5, 7))),
    ):
        np.testing.assert_array_equal(init((5, 7), np.random.default_rng(3), np.float64),
                                      reference(np.random.default_rng(3)))


# ------------------------------------------------------------------------------------------------
# Item 7: a layer belongs to one network
# ------------------------------------------------------------------------------------------------

def test_a_layer_in_one_network_is_refused_by_another_naming_both():
    # Keras's Sequential would share the layer; here adding it rebuilt it for the second network
    # (new weights, or another input shape) and silently broke the first.
    from modularcnn import Net
    from modularcnn.layers import Dense
    first = Net(input_shape=(4,), name="first", seed=0)
    layer = first.add(Dense(3))
    before = layer.params["kernel"].copy()
    second = Net(input_shape=(6,), name="second", seed=1)
    with pytest.raises(ValueError, match=r"second\.add: layer dense \(Dense\) already belongs to "
                                         r"Net 'first'; a layer can be in one network only"):
        second.add(layer)
    assert second.layers == [] and layer.input_shape == (4,)
    np.testing.assert_array_equal(layer.params["kernel"], before)
    # two networks with the default name are told apart
    held = Net(input_shape=(4,), layers=[Dense(2)])
    with pytest.raises(ValueError, match="already belongs to another Net 'net'"):
        Net(input_shape=(6,)).add(held.layers[0])
    # through the constructor too
    with pytest.raises(ValueError, match="already belongs to Net 'first'"):
        Net(input_shape=(4,), layers=[layer])


def test_a_dropped_network_frees_its_layers():
    import gc
    from modularcnn import Net
    from modularcnn.layers import Dense
    layer = Dense(3)
    Net(input_shape=(4,)).add(layer)
    gc.collect()
    net = Net(input_shape=(4,), name="again")
    assert net.add(layer) is layer


def test_residual_blocks_claim_their_layers():
    from modularcnn import Net
    from modularcnn.layers import Dense, Residual
    inner = Dense(4)
    block = Residual([inner])
    with pytest.raises(ValueError, match=r"layer .*Dense.* already belongs to Residual"):
        Net(input_shape=(4,)).add(inner)
    with pytest.raises(ValueError, match=r"already belongs to Residual"):
        Residual([inner])
    net = Net(input_shape=(4,))
    net.add(Dense(4))
    net.add(block)
    with pytest.raises(ValueError, match=r"already belongs to Net 'net'"):
        Residual([net.layers[0]])


def test_shared_layers_across_graph_models_still_work():
    # Keras's functional pattern: an encoder Model and an autoencoder Model share their layers
    from modularcnn import Input, Model
    from modularcnn.layers import Dense
    x = Input((6,))
    encode = Dense(2, name="encode")
    decode = Dense(6, name="decode")
    code = encode(x)
    encoder = Model(x, code)
    autoencoder = Model(x, decode(code))
    data = np.random.default_rng(0).random((5, 6)).astype(np.float32)
    np.testing.assert_allclose(autoencoder.predict(data), decode(encode(data)), rtol=1e-6)
    np.testing.assert_allclose(encoder.predict(data), encode(data), rtol=1e-6)
    assert encoder.get_layer("encode") is autoencoder.get_layer("encode")


# ------------------------------------------------------------------------------------------------
# Item 9: IDX gzip bombs
# ------------------------------------------------------------------------------------------------

def write_gzip(path, header, zero_bytes, piece=1 << 24):
    """A gzip file of ``header`` followed by ``zero_bytes`` zeros, compressed piece by piece."""
    import zlib
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    zeros = bytes(min(piece, zero_bytes) or 1)
    with open(path, "wb") as handle:
        handle.write(compressor.compress(header))
        left = zero_bytes
        while left > 0:
            handle.write(compressor.compress(zeros[:min(piece, left)]))
            left -= piece
        handle.write(compressor.flush())


def test_idx_gzip_bomb_is_refused_from_its_header_in_bounded_memory(tmp_path):
    import struct
    # a label file whose header says 10 labels, followed by 384 MiB of zeros (under 1 MB gzipped),
    # read with 200 MiB to spare: decompressing it whole before the header was looked at fails
    write_gzip(tmp_path / "bomb.gz", struct.pack(">BBBBI", 0, 0, 8, 1, 10), 384 * 2**20)
    # a 1 KB file whose header claims 2**31 uint8 values: more than deflate can give from 1 KB
    write_gzip(tmp_path / "claims.gz", struct.pack(">BBBBI", 0, 0, 8, 1, 2**31 - 1), 1000)
    # dimensions whose int64 product wraps around to 0, and 255 dimensions
    write_gzip(tmp_path / "wraps.gz", struct.pack(">BBBB4I", 0, 0, 8, 4, *(65536,) * 4), 0)
    write_gzip(tmp_path / "many.gz", struct.pack(">BBBB", 0, 0, 8, 255) + b"\0\0\0\1" * 255, 0)
    assert (tmp_path / "bomb.gz").stat().st_size < 2_000_000
    lines = run_bounded(f"""
        from modularcnn.datasets import DatasetError, load_idx
        for name in ("bomb", "claims", "wraps", "many"):
            try:
                load_idx({str(tmp_path)!r} + "/" + name + ".gz")
            except DatasetError as error:
                print(name, "refused:", error)
    """, extra_mib=200)
    assert len(lines) == 4, lines
    found = dict(line.split(" ", 1) for line in lines)
    assert "payload has trailing bytes: dims (10,)" in found["bomb"]
    assert "decompression bomb" in found["claims"]
    assert "MAX_IDX_ELEMENTS" in found["wraps"] and "(65536, 65536, 65536, 65536)" in found["wraps"]
    assert "255 dimensions" in found["many"]


def test_idx_gzip_streaming_still_checks_the_crc_and_reads_every_dtype(tmp_path):
    import gzip
    from modularcnn.datasets import DatasetError, load_idx, save_idx
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64):
        values = (np.arange(3 * 5 * 7) - 50).astype(dtype).reshape(3, 5, 7)
        loaded = load_idx(save_idx(tmp_path / f"a_{np.dtype(dtype).name}.gz", values))
        assert loaded.dtype == np.dtype(dtype) and loaded.flags.writeable
        np.testing.assert_array_equal(loaded, values)
    raw = bytearray((tmp_path / "a_int16.gz").read_bytes())
    raw[-6] ^= 0xFF  # the CRC-32 in the trailer
    (tmp_path / "crc.gz").write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="damaged gzip"):
        load_idx(tmp_path / "crc.gz")
    (tmp_path / "short.gz").write_bytes(gzip.compress(
        gzip.decompress((tmp_path / "a_uint8.gz").read_bytes())[:-3]))
    with pytest.raises(DatasetError, match="truncated"):
        load_idx(tmp_path / "short.gz")
