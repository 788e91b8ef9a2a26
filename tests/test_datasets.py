"""Tests for modularcnn.datasets: IDX/CSV/CIFAR readers, search order, safe downloads.

No test touches the network: MODULARCNN_OFFLINE=1 is set for every test, and the download
tests replace ``urllib.request.urlopen`` with a fake mirror.
"""

import gzip
import hashlib
import io
import struct
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from modularcnn.datasets import (DatasetError, cifar10, cifar100, fashion_mnist, load_csv,
                                 load_idx, mnist, save_idx)

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """Empty HOME (so an empty cache), no MODULARCNN_DATA, and no network."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MODULARCNN_DATA", raising=False)
    monkeypatch.setenv("MODULARCNN_OFFLINE", "1")
    return home


def idx_bytes(array, code, dtype):
    """IDX encoding written out by hand from the format description (the test oracle)."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(dtype).tobytes()


def fake_idx_set(n_train=5, n_test=3, seed=0):
    """Small MNIST-shaped dataset: {file name: raw IDX bytes}, plus the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_NAMES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_NAMES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    raw = {name: idx_bytes(a, 0x08, ">u1") for name, a in arrays.items()}
    return raw, arrays


def write_set(folder, raw, compress=True, names=IDX_NAMES):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        data = gzip.compress(raw[name]) if compress else raw[name]
        (folder / (f"{name}.gz" if compress else name)).write_bytes(data)
    return folder


def assert_set_equal(loaded, arrays):
    (x_train, y_train), (x_test, y_test) = loaded
    for got, name in ((x_train, IDX_NAMES[0]), (y_train, IDX_NAMES[1]),
                      (x_test, IDX_NAMES[2]), (y_test, IDX_NAMES[3])):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[name])


# --------------------------------------------------------------------------- IDX reader

IDX_CODES = [(0x08, ">u1", np.uint8), (0x09, ">i1", np.int8), (0x0B, ">i2", np.int16),
             (0x0C, ">i4", np.int32), (0x0D, ">f4", np.float32), (0x0E, ">f8", np.float64)]


@pytest.mark.parametrize("code,big_endian,native", IDX_CODES)
@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_every_dtype_code(tmp_path, code, big_endian, native, compress):
    values = np.arange(-7, 17).reshape(2, 3, 4)
    if native == np.uint8:
        values = values + 7
    if np.issubdtype(native, np.floating):
        values = values * 0.25
    data = idx_bytes(values, code, big_endian)
    path = tmp_path / "file.idx"
    path.write_bytes(gzip.compress(data) if compress else data)

    loaded = load_idx(path)

    assert loaded.dtype == np.dtype(native)  # native byte order
    assert loaded.shape == (2, 3, 4)
    assert loaded.flags.writeable
    np.testing.assert_array_equal(loaded, values)


def test_gzip_is_detected_by_content_not_by_name(tmp_path):
    values = np.arange(10, dtype=np.uint8)
    data = idx_bytes(values, 0x08, ">u1")
    gz_named_plain = tmp_path / "labels.idx"
    gz_named_plain.write_bytes(gzip.compress(data))
    plain_named_gz = tmp_path / "labels.idx.gz"
    plain_named_gz.write_bytes(data)
    np.testing.assert_array_equal(load_idx(gz_named_plain), values)
    np.testing.assert_array_equal(load_idx(plain_named_gz), values)


def test_save_idx_writes_the_documented_bytes(tmp_path):
    values = np.array([[1, -2, 3], [40000, 5, -6]], dtype=np.int32)
    path = save_idx(tmp_path / "a.idx", values)
    assert path.read_bytes() == idx_bytes(values, 0x0C, ">i4")
    gz_path = save_idx(tmp_path / "a.idx.gz", values)
    assert gzip.decompress(gz_path.read_bytes()) == idx_bytes(values, 0x0C, ">i4")
    with pytest.raises(ValueError, match="no IDX code"):
        save_idx(tmp_path / "b.idx", np.zeros(3, dtype=np.uint16))


def _damage_cases():
    good = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08, ">u1")
    zipped = gzip.compress(good)
    flipped_deflate = bytearray(zipped)
    flipped_deflate[len(zipped) // 2] ^= 0xFF
    flipped_crc = bytearray(zipped)
    flipped_crc[-6] ^= 0x01  # the CRC-32 sits in the last 8 bytes
    return {
        "truncated payload": (good[:-1], "truncated"),
        "trailing bytes": (good + b"\0", "trailing"),
        "wrong magic": (b"\x08\x03" + good[2:], "not an IDX file"),
        "unknown dtype code": (good[:2] + b"\x07" + good[3:], "unknown IDX dtype code 0x07"),
        "header shorter than its dims": (good[:9], "header declares 3 dimensions"),
        "under four bytes": (good[:3], "too short"),
        "empty": (b"", "too short"),
        "truncated gzip": (zipped[: len(zipped) - 10], "damaged gzip"),
        "byte-flipped gzip": (bytes(flipped_deflate), "damaged gzip"),
        "gzip with bad CRC": (bytes(flipped_crc), "damaged gzip"),
    }


@pytest.mark.parametrize("case", sorted(_damage_cases()))
def test_damaged_idx_is_refused_with_the_file_name(tmp_path, case):
    data, expected = _damage_cases()[case]
    path = tmp_path / "broken-idx3-ubyte.gz"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=expected) as info:
        load_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_real_mnist_gzip_is_refused(mnist_dir, tmp_path):
    data = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="damaged gzip"):
        load_idx(path)


# --------------------------------------------------------------------------- real MNIST

@pytest.fixture(scope="module")
def real_mnist(mnist_dir):
    return mnist.load_data(path=mnist_dir)


def test_real_mnist_shapes_dtypes_and_statistics(real_mnist):
    (x_train, y_train), (x_test, y_test) = real_mnist
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
    assert y_test.shape == (10000,) and y_test.dtype == np.uint8
    # Values from the data folder's README.
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    assert round(float(x_train.mean(dtype=np.float64)), 3) == 33.318


def test_real_mnist_found_through_the_environment_variable(mnist_dir, monkeypatch):
    monkeypatch.setenv("MODULARCNN_DATA", str(mnist_dir.parent))
    (_, y_train), (x_test, _) = mnist.load_data()
    assert y_train.shape == (60000,) and x_test.shape == (10000, 28, 28)


def test_mnist_hash_table_matches_the_real_decompressed_files(mnist_dir):
    for name, digest in mnist.SHA256_DECOMPRESSED.items():
        data = gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())
        assert hashlib.sha256(data).hexdigest() == digest, name


# --------------------------------------------------------------------------- search order

def test_search_order_path_then_env_then_cache(tmp_path, monkeypatch, isolated_environment):
    sets = {where: fake_idx_set(n_train=2 + i, seed=i)
            for i, where in enumerate(("path", "env", "cache"))}
    write_set(tmp_path / "explicit", sets["path"][0])
    write_set(tmp_path / "root" / "mnist", sets["env"][0])
    write_set(isolated_environment / ".cache" / "modularcnn" / "mnist", sets["cache"][0])
    monkeypatch.setenv("MODULARCNN_DATA", str(tmp_path / "root"))

    assert_set_equal(mnist.load_data(path=tmp_path / "explicit"), sets["path"][1])
    assert_set_equal(mnist.load_data(), sets["env"][1])
    monkeypatch.delenv("MODULARCNN_DATA")
    assert_set_equal(mnist.load_data(), sets["cache"][1])


def test_incomplete_env_folder_is_skipped_for_the_cache(tmp_path, monkeypatch, isolated_environment):
    raw, arrays = fake_idx_set()
    write_set(tmp_path / "root" / "mnist", raw, names=IDX_NAMES[:3])  # no test labels
    write_set(isolated_environment / ".cache" / "modularcnn" / "mnist", raw, compress=False)
    monkeypatch.setenv("MODULARCNN_DATA", str(tmp_path / "root"))
    assert_set_equal(mnist.load_data(), arrays)  # plain files work too


@pytest.mark.parametrize("loader", [mnist, fashion_mnist, cifar10, cifar100])
@pytest.mark.parametrize("where", ["missing folder", "incomplete folder"])
def test_an_explicit_path_is_used_or_refused_never_replaced(tmp_path, monkeypatch,
                                                            isolated_environment, loader, where):
    # Issue 14 item 15: a wrong path= used to load $MODULARCNN_DATA's copy without a word.
    calls = _forbid_network(monkeypatch)
    raw, _ = fake_idx_set()
    for root in (tmp_path / "root" / loader.NAME, isolated_environment / ".cache" / "modularcnn" /
                 loader.NAME):  # complete sets everywhere else
        if loader in (mnist, fashion_mnist):
            write_set(root, raw)
        elif loader is cifar10:
            fake_cifar(root / cifar10.FOLDER)
        else:
            fake_cifar100(root / cifar100.FOLDER)
    monkeypatch.setenv("MODULARCNN_DATA", str(tmp_path / "root"))
    explicit = tmp_path / "explicit"
    if where == "incomplete folder":
        explicit.mkdir()
        if loader in (mnist, fashion_mnist):
            write_set(explicit, raw, names=IDX_NAMES[:3])
    with pytest.raises(DatasetError) as info:
        loader.load_data(path=explicit)
    message = str(info.value)
    assert f"path={str(explicit)!r}" in message and "not found" in message
    assert "MODULARCNN_DATA" in message and "not tried" in message
    if loader in (mnist, fashion_mnist) and where == "incomplete folder":
        assert "missing t10k-labels-idx1-ubyte" in message
    assert calls == []
    assert loader.load_data()  # the other copies are still there for path=None


@pytest.mark.parametrize("bad", ["", 3, ["folder"], b"bytes"])
def test_a_path_that_is_not_a_folder_name_is_refused(bad):
    with pytest.raises(DatasetError, match=r"path must be a folder .* got "):
        mnist.load_data(path=bad)


def test_fashion_mnist_uses_its_own_folder_name(tmp_path, monkeypatch):
    raw, arrays = fake_idx_set(seed=3)
    write_set(tmp_path / "root" / "fashion_mnist", raw)
    monkeypatch.setenv("MODULARCNN_DATA", str(tmp_path / "root"))
    assert_set_equal(fashion_mnist.load_data(), arrays)
    with pytest.raises(DatasetError, match="MNIST not found"):
        mnist.load_data()


@pytest.mark.parametrize("damage,expected", [
    ("label 10", "contains label 10"),
    ("count mismatch", "has 5 images but .* has 4 labels"),
    ("wrong image size", r"expected uint8 \(N, 28, 28\)"),
])
def test_inconsistent_mnist_files_are_refused(tmp_path, damage, expected):
    raw, arrays = fake_idx_set()
    if damage == "label 10":
        labels = arrays[IDX_NAMES[1]].copy()
        labels[2] = 10
        raw[IDX_NAMES[1]] = idx_bytes(labels, 0x08, ">u1")
    elif damage == "count mismatch":
        raw[IDX_NAMES[1]] = idx_bytes(arrays[IDX_NAMES[1]][:4], 0x08, ">u1")
    else:
        raw[IDX_NAMES[0]] = idx_bytes(np.zeros((5, 28, 27), np.uint8), 0x08, ">u1")
    write_set(tmp_path / "d", raw)
    with pytest.raises(DatasetError, match=expected):
        mnist.load_data(path=tmp_path / "d")


# --------------------------------------------------------------------------- missing files

def _forbid_network(monkeypatch):
    calls = []

    def urlopen(url, *args, **kwargs):
        calls.append(url)
        raise AssertionError(f"network used in offline mode: {url}")
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


@pytest.mark.parametrize("loader", [mnist, fashion_mnist, cifar10, cifar100])
def test_offline_error_lists_every_place_and_the_fixes(tmp_path, monkeypatch,
                                                       isolated_environment, loader):
    calls = _forbid_network(monkeypatch)
    monkeypatch.setenv("MODULARCNN_DATA", str(tmp_path / "root"))
    with pytest.raises(DatasetError) as info:
        loader.load_data()
    message = str(info.value)
    assert calls == []
    for place in (tmp_path / "root" / loader.NAME,
                  isolated_environment / ".cache" / "modularcnn" / loader.NAME):
        assert str(place) in message
    assert "MODULARCNN_OFFLINE" in message
    assert "path=" in message and "MODULARCNN_DATA" in message


def test_unreachable_mirrors_fail_fast_with_every_error(monkeypatch, isolated_environment):
    monkeypatch.delenv("MODULARCNN_OFFLINE")
    calls = []

    def urlopen(url, *args, timeout=None, **kwargs):
        calls.append((url, timeout))
        raise urllib.error.URLError("no route to host")
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)

    with pytest.raises(DatasetError) as info:
        mnist.load_data()
    message = str(info.value)
    # One attempt per mirror for the first file, then it stops instead of trying the rest.
    assert [url for url, _ in calls] == [m + IDX_NAMES[0] + ".gz" for m in mnist.MIRRORS]
    assert all(timeout is not None and timeout <= 30 for _, timeout in calls)
    assert "no route to host" in message
    assert str(isolated_environment / ".cache" / "modularcnn" / "mnist") in message
    assert "$MODULARCNN_DATA is not set" in message


# --------------------------------------------------------------------------- downloads

class FakeResponse(io.BytesIO):
    """What urlopen returns, reduced to what the downloader uses."""

    def __init__(self, data, content_length=None, fail_after=None):
        super().__init__(data)
        length = len(data) if content_length is None else content_length
        self.headers = {"Content-Length": str(length)}
        self.fail_after = fail_after

    def read(self, size=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return super().read(size)


def serve(monkeypatch, files, **response_options):
    """Replace urlopen by a mirror serving ``files`` ({url: bytes}); returns requested URLs."""
    requested = []

    def urlopen(url, *args, **kwargs):
        requested.append(url)
        if url not in files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return FakeResponse(files[url], **response_options)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.delenv("MODULARCNN_OFFLINE")
    return requested


def test_download_verifies_decompressed_sha256_and_writes_atomically(monkeypatch,
                                                                      isolated_environment):
    raw, arrays = fake_idx_set()
    monkeypatch.setattr(mnist, "SHA256_DECOMPRESSED",
                        {name: hashlib.sha256(data).hexdigest() for name, data in raw.items()})
    second_mirror = mnist.MIRRORS[1]
    # Only the second mirror has the files: the first answers 404 for each.
    requested = serve(monkeypatch, {second_mirror + n + ".gz": gzip.compress(raw[n])
                                    for n in IDX_NAMES})

    assert_set_equal(mnist.load_data(), arrays)

    cache = isolated_environment / ".cache" / "modularcnn" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(n + ".gz" for n in IDX_NAMES)
    assert len(requested) == 8  # each file: first mirror (404), then the second
    # Now cached: loading again makes no request.
    assert_set_equal(mnist.load_data(), arrays)
    assert len(requested) == 8


def test_only_missing_files_are_downloaded(monkeypatch, isolated_environment):
    raw, arrays = fake_idx_set()
    cache = isolated_environment / ".cache" / "modularcnn" / "mnist"
    write_set(cache, raw, names=IDX_NAMES[:3])
    monkeypatch.setattr(mnist, "SHA256_DECOMPRESSED",
                        {name: hashlib.sha256(data).hexdigest() for name, data in raw.items()})
    requested = serve(monkeypatch, {mnist.MIRRORS[0] + IDX_NAMES[3] + ".gz":
                                    gzip.compress(raw[IDX_NAMES[3]])})
    assert_set_equal(mnist.load_data(), arrays)
    assert requested == [mnist.MIRRORS[0] + IDX_NAMES[3] + ".gz"]


def test_checksum_mismatch_leaves_nothing_in_the_cache(monkeypatch, isolated_environment):
    raw, _ = fake_idx_set()
    monkeypatch.setattr(mnist, "SHA256_DECOMPRESSED", {name: "0" * 64 for name in IDX_NAMES})
    serve(monkeypatch, {m + n + ".gz": gzip.compress(raw[n])
                        for m in mnist.MIRRORS for n in IDX_NAMES})
    with pytest.raises(DatasetError, match="checksum mismatch"):
        mnist.load_data()
    cache = isolated_environment / ".cache" / "modularcnn" / "mnist"
    assert list(cache.iterdir()) == []  # neither the file nor a temporary


@pytest.mark.parametrize("options,expected", [
    ({"fail_after": 100}, "connection reset"),
    ({"content_length": 10**6}, "incomplete download"),
])
def test_interrupted_download_leaves_no_partial_file(monkeypatch, isolated_environment,
                                                    options, expected):
    raw, _ = fake_idx_set()
    monkeypatch.setattr(mnist, "SHA256_DECOMPRESSED",
                        {name: hashlib.sha256(data).hexdigest() for name, data in raw.items()})
    serve(monkeypatch, {m + n + ".gz": gzip.compress(raw[n])
                        for m in mnist.MIRRORS for n in IDX_NAMES}, **options)
    with pytest.raises(DatasetError, match=expected):
        mnist.load_data()
    cache = isolated_environment / ".cache" / "modularcnn" / "mnist"
    assert list(cache.iterdir()) == []


def test_fashion_mnist_download_checks_gzip_md5(monkeypatch, isolated_environment):
    raw, arrays = fake_idx_set(seed=7)
    served = {n: gzip.compress(raw[n]) for n in IDX_NAMES}
    monkeypatch.setattr(fashion_mnist, "MD5_GZIP",
                        {n: hashlib.md5(data).hexdigest() for n, data in served.items()})
    serve(monkeypatch, {fashion_mnist.MIRRORS[0] + n + ".gz": served[n] for n in IDX_NAMES})
    assert_set_equal(fashion_mnist.load_data(), arrays)


# --------------------------------------------------------------------------- CIFAR-10

def fake_cifar(folder, records_per_file=3, seed=0):
    """Write six tiny batch files; return {file name: (N, 3073) uint8 records}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in cifar10.TRAIN_FILES + (cifar10.TEST_FILE,):
        records = rng.integers(0, 256, (records_per_file, 3073), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, records_per_file)
        (folder / name).write_bytes(records.tobytes())
        written[name] = records
    return written


def naive_cifar_images(records):
    """Decode records pixel by pixel from the format description."""
    images = np.zeros((len(records), 32, 32, 3), dtype=np.uint8)
    for n in range(len(records)):
        for row in range(32):
            for col in range(32):
                for channel in range(3):
                    images[n, row, col, channel] = records[n, 1 + channel * 1024 + row * 32 + col]
    return images


def test_cifar10_reads_channel_major_records_as_channels_last(tmp_path):
    written = fake_cifar(tmp_path / "cifar-10-batches-bin")
    (x_train, y_train), (x_test, y_test) = cifar10.load_data(path=tmp_path)

    train_records = np.concatenate([written[f] for f in cifar10.TRAIN_FILES])
    assert x_train.shape == (15, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.dtype == np.uint8 and x_train.flags.c_contiguous
    np.testing.assert_array_equal(x_train, naive_cifar_images(train_records))
    np.testing.assert_array_equal(y_train, train_records[:, 0])
    np.testing.assert_array_equal(x_test, naive_cifar_images(written[cifar10.TEST_FILE]))
    np.testing.assert_array_equal(y_test, written[cifar10.TEST_FILE][:, 0])


def test_cifar10_accepts_the_batches_folder_itself_and_the_env_root(tmp_path, monkeypatch):
    written = fake_cifar(tmp_path / "root" / "cifar10")
    (_, y_train), _ = cifar10.load_data(path=tmp_path / "root" / "cifar10")
    np.testing.assert_array_equal(y_train[:3], written["data_batch_1.bin"][:, 0])
    monkeypatch.setenv("MODULARCNN_DATA", str(tmp_path / "root"))
    (_, y_env), _ = cifar10.load_data()
    np.testing.assert_array_equal(y_env, y_train)


@pytest.mark.parametrize("damage,expected", [
    ("cut record", "not a positive multiple of the 3073-byte record"),
    ("empty file", "not a positive multiple"),
    ("label 12", "contains label 12"),
])
def test_damaged_cifar10_batches_are_refused(tmp_path, damage, expected):
    folder = tmp_path / "cifar-10-batches-bin"
    written = fake_cifar(folder)
    target = folder / "data_batch_3.bin"
    if damage == "cut record":
        target.write_bytes(written["data_batch_3.bin"].tobytes()[:-1])
    elif damage == "empty file":
        target.write_bytes(b"")
    else:
        records = written["data_batch_3.bin"].copy()
        records[1, 0] = 12
        target.write_bytes(records.tobytes())
    with pytest.raises(DatasetError, match=expected) as info:
        cifar10.load_data(path=tmp_path)
    assert str(target) in str(info.value)


def make_tar_gz(members):
    """Build a .tar.gz in memory from {name: bytes or 'symlink:target'}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, str) and content.startswith("symlink:"):
                info.type = tarfile.SYMTYPE
                info.linkname = content[len("symlink:"):]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_cifar10_download_and_safe_extraction(tmp_path, monkeypatch, isolated_environment):
    written = fake_cifar(tmp_path / "src")
    archive = make_tar_gz({f"cifar-10-batches-bin/{name}": records.tobytes()
                           for name, records in written.items()})
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(archive).hexdigest())
    serve(monkeypatch, {cifar10.URL: archive})

    (_, y_train), (x_test, _) = cifar10.load_data()

    np.testing.assert_array_equal(y_train[:3], written["data_batch_1.bin"][:, 0])
    np.testing.assert_array_equal(x_test, naive_cifar_images(written["test_batch.bin"]))
    cache = isolated_environment / ".cache" / "modularcnn" / "cifar10"
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-bin",
                                                       "cifar-10-binary.tar.gz"]


@pytest.mark.parametrize("evil", ["../escaped.bin", "absolute", "elsewhere.bin", "symlink",
                                  "cifar-10-batches-bin/../../escaped.bin"])
def test_cifar10_archive_with_unsafe_members_is_refused(tmp_path, monkeypatch,
                                                        isolated_environment, evil):
    written = fake_cifar(tmp_path / "src")
    members = {f"cifar-10-batches-bin/{n}": r.tobytes() for n, r in written.items()}
    if evil == "symlink":
        members["cifar-10-batches-bin/link.bin"] = "symlink:/etc/passwd"
    elif evil == "absolute":
        members[str(tmp_path / "escaped.bin")] = b"gotcha"
    else:
        members[evil] = b"gotcha"
    archive = make_tar_gz(members)
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(archive).hexdigest())
    serve(monkeypatch, {cifar10.URL: archive})

    with pytest.raises(DatasetError, match="refusing archive member"):
        cifar10.load_data()
    cache = isolated_environment / ".cache" / "modularcnn"
    assert not (cache / "cifar10" / "cifar-10-batches-bin").exists()
    assert not any(p.name == "escaped.bin" for p in tmp_path.rglob("*"))


# --------------------------------------------------------------------------- CSV

def write_csv(path, labels, pixels, header=None):
    lines = [header] if header else []
    lines += [",".join(str(v) for v in [label, *row]) for label, row in zip(labels, pixels)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def csv_data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 10, 6), rng.integers(0, 256, (6, 12))


@pytest.mark.parametrize("header_line,header_arg", [
    ("label," + ",".join(f"p{i}" for i in range(12)), "infer"),
    ("label," + ",".join(f"p{i}" for i in range(12)), True),
    (None, "infer"),
    (None, False),
])
def test_load_csv_with_and_without_header(tmp_path, csv_data, header_line, header_arg):
    labels, pixels = csv_data
    path = write_csv(tmp_path / "d.csv", labels, pixels, header_line)
    x, y = load_csv(path, header=header_arg)
    assert x.dtype == np.uint8 and x.shape == (6, 12)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x, pixels)
    np.testing.assert_array_equal(y, labels)


def test_load_csv_options(tmp_path, csv_data):
    labels, pixels = csv_data
    # Label in the last column, gzipped, reshaped, float32 pixels, blank trailing lines.
    text = "\n".join(",".join(str(v) for v in [*row, label])
                     for label, row in zip(labels, pixels)) + "\n\n\n"
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    x, y = load_csv(path, label_column=-1, image_shape=(3, 4, 1), dtype=np.float32)
    assert x.shape == (6, 3, 4, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x, pixels.reshape(6, 3, 4, 1))
    np.testing.assert_array_equal(y, labels)


def test_load_csv_header_false_on_a_header_file_names_the_line(tmp_path, csv_data):
    path = write_csv(tmp_path / "d.csv", *csv_data, header="label,a,b,c,d,e,f,g,h,i,j,k,l")
    with pytest.raises(DatasetError, match=r"line 1, column 1: 'label' is not a number"):
        load_csv(path, header=False)


@pytest.mark.parametrize("edit,expected", [
    (lambda lines: lines.__setitem__(4, lines[4] + ",7"), r"line 5: 14 values, expected 13"),
    (lambda lines: lines.__setitem__(3, lines[3].rsplit(",", 1)[0]), r"line 4: 12 values"),
    (lambda lines: lines.__setitem__(5, "3," + "x," + lines[5].split(",", 2)[2]),
     r"line 6, column 2: 'x' is not a number"),
    (lambda lines: lines.__setitem__(2, "3,," + lines[2].split(",", 2)[2]),
     r"line 3, column 2: '' is not a number"),
    (lambda lines: lines.__setitem__(2, "3,300" + lines[2][lines[2].index(",", 2):]),
     r"line 3: pixel value 300 does not fit uint8"),
    (lambda lines: lines.__setitem__(6, "2.5" + lines[6][lines[6].index(","):]),
     r"line 7: label 2.5 is not a non-negative integer"),
])
def test_load_csv_bad_rows_name_the_line(tmp_path, csv_data, edit, expected):
    labels, pixels = csv_data
    path = write_csv(tmp_path / "d.csv", labels, pixels,
                     header="label," + ",".join(f"p{i}" for i in range(12)))
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=expected):
        load_csv(path)


def test_load_csv_empty_and_shape_errors(tmp_path, csv_data):
    empty = tmp_path / "empty.csv"
    empty.write_text("label,a,b\n\n")
    with pytest.raises(DatasetError, match="no data rows"):
        load_csv(empty)
    path = write_csv(tmp_path / "d.csv", *csv_data)
    with pytest.raises(DatasetError, match=r"12 pixel values.*image_shape=\(5, 5\)"):
        load_csv(path, image_shape=(5, 5))
    with pytest.raises(ValueError, match="header must be"):
        load_csv(path, header="yes")


# --------------------------------------------------------------------------- CIFAR-100

def fake_cifar100(folder, records_per_file=4, seed=0):
    """Write tiny train.bin/test.bin files; return {file name: (N, 3074) uint8 records}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in (cifar100.TRAIN_FILE, cifar100.TEST_FILE):
        records = rng.integers(0, 256, (records_per_file, 3074), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 20, records_per_file)
        records[:, 1] = rng.integers(0, 100, records_per_file)
        (folder / name).write_bytes(records.tobytes())
        written[name] = records
    return written


@pytest.mark.parametrize("label_mode, column", [("fine", 1), ("coarse", 0)])
def test_cifar100_reads_both_label_modes_channels_last(tmp_path, label_mode, column):
    written = fake_cifar100(tmp_path / "cifar-100-binary")
    (x_train, y_train), (x_test, y_test) = cifar100.load_data(label_mode=label_mode, path=tmp_path)

    train = written["train.bin"]
    assert x_train.shape == (4, 32, 32, 3) and x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    # The pixels follow the two label bytes; decode them with the CIFAR-10 oracle's layout.
    np.testing.assert_array_equal(x_train, naive_cifar_images(train[:, 1:]))
    np.testing.assert_array_equal(y_train, train[:, column])
    np.testing.assert_array_equal(x_test, naive_cifar_images(written["test.bin"][:, 1:]))
    np.testing.assert_array_equal(y_test, written["test.bin"][:, column])


def test_cifar100_refuses_bad_label_mode_damage_and_out_of_range_labels(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    written = fake_cifar100(folder)
    with pytest.raises(ValueError, match="label_mode must be 'fine' or 'coarse'"):
        cifar100.load_data(label_mode="medium", path=tmp_path)
    (folder / "test.bin").write_bytes(written["test.bin"].tobytes()[:-1])
    with pytest.raises(DatasetError, match="3074-byte record"):
        cifar100.load_data(path=tmp_path)
    records = written["test.bin"].copy()
    records[2, 0] = 20  # a coarse label out of range is refused even when fine labels are asked for
    (folder / "test.bin").write_bytes(records.tobytes())
    with pytest.raises(DatasetError, match="coarse label 20"):
        cifar100.load_data(path=tmp_path)


def test_cifar100_download_and_safe_extraction(tmp_path, monkeypatch, isolated_environment):
    written = fake_cifar100(tmp_path / "src")
    archive = make_tar_gz({f"cifar-100-binary/{name}": records.tobytes()
                           for name, records in written.items()})
    monkeypatch.setattr(cifar100, "ARCHIVE_MD5", hashlib.md5(archive).hexdigest())
    serve(monkeypatch, {cifar100.URL: archive})

    (_, y_train), _ = cifar100.load_data(label_mode="coarse")

    np.testing.assert_array_equal(y_train, written["train.bin"][:, 0])
    cache = isolated_environment / ".cache" / "modularcnn" / "cifar100"
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-100-binary", "cifar-100-binary.tar.gz"]


def test_cifar100_archive_member_outside_its_folder_is_refused(tmp_path, monkeypatch):
    written = fake_cifar100(tmp_path / "src")
    members = {f"cifar-100-binary/{n}": r.tobytes() for n, r in written.items()}
    members["../escaped.bin"] = b"x"
    archive = make_tar_gz(members)
    monkeypatch.setattr(cifar100, "ARCHIVE_MD5", hashlib.md5(archive).hexdigest())
    serve(monkeypatch, {cifar100.URL: archive})
    with pytest.raises(DatasetError, match="refusing archive member"):
        cifar100.load_data()
    assert not (tmp_path / "escaped.bin").exists()
