"""Damaged model files: every load either gives back exactly the saved network or raises
ModelFileError, whatever was done to the file (truncation, flipped or overwritten bytes, deleted or
renamed groups, datasets and attributes, attributes and datasets replaced by wrong types)."""

import functools
import os
import tempfile

import h5py
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest

from modularcnn import ModelFileError, Net, load_model, optimizers
from modularcnn.layers import BatchNormalization, Convolutional, Dense, Dropout, Flatten

pytestmark = pytest.mark.fuzz  # part of the fuzz suite (tests/test_fuzz.py reuses these helpers)


def build_net(seed):
    net = Net(input_shape=(6, 6, 1), seed=seed)
    net.add(Convolutional(3, 3, activation="relu"))
    net.add(BatchNormalization())
    net.add(Dropout(0.25))
    net.add(Flatten())
    net.add(Dense(2, activation="softmax"))
    return net


@functools.cache
def reference():
    """The saved file's bytes, its objects and attributes, and what a correct load must give."""
    net = build_net(seed=0)
    net.compile(optimizer=optimizers.Adam(0.01), loss="cross_entropy", metrics=["acc"])
    x = np.random.default_rng(0).normal(size=(8, 6, 6, 1)).astype(np.float32)
    net.fit(x, np.arange(8) % 2, epochs=1, batch_size=4, verbose=0)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.h5")
        net.save(path)
        with open(path, "rb") as handle:
            data = handle.read()
        objects, attributes = [], []
        with h5py.File(path, "r") as f:
            f.visit(objects.append)
            for name in [None] + objects:
                obj = f if name is None else f[name]
                attributes += [(name, key) for key in obj.attrs]
            datasets = [name for name in objects if isinstance(f[name], h5py.Dataset)]
    return {"data": data, "objects": objects, "attributes": attributes, "datasets": datasets,
            "weights": net.get_weights(), "x": x, "predictions": net.predict(x)}


def check_load(path):
    """Load as a model and as weights: exactly the reference, or ModelFileError."""
    ref = reference()
    try:
        net = load_model(path)
    except ModelFileError:
        pass
    else:
        assert all(a.tobytes() == b.tobytes() for a, b in zip(net.get_weights(), ref["weights"]))
        assert net.predict(ref["x"]).tobytes() == ref["predictions"].tobytes()
    target = build_net(seed=1)
    try:
        target.load_weights(path)
    except ModelFileError:
        pass
    else:
        assert all(a.tobytes() == b.tobytes() for a, b in zip(target.get_weights(), ref["weights"]))


def junk_values():
    return st.one_of(
        # HDF5 strings cannot hold NUL or a lone UTF-16 surrogate (h5py refuses to write either:
        # UnicodeEncodeError), so no damaged file has them.
        st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True),
        st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30),
        st.binary(min_size=1, max_size=30).map(lambda b: b.replace(b"\x00", b"\x01")),
        st.just("{}"), st.just("[]"), st.just('{"layers": []}'),
        st.just(np.arange(3)), st.just(np.array([b"a", b"b"])), st.just(np.float32(1.5)),
    )


REPLACEMENTS = {
    "int64": lambda shape: np.zeros(shape, np.int64),
    "float64": lambda shape: np.zeros(shape, np.float64),
    "bool": lambda shape: np.zeros(shape, bool),
    "bytes": lambda shape: np.full(shape or (1,), b"x"),
    "complex": lambda shape: np.zeros(shape, np.complex64),
    "compound": lambda shape: np.zeros(shape or (1,), dtype=[("a", "f4"), ("b", "i4")]),
    "bigger": lambda shape: np.zeros(tuple(d + 1 for d in shape) or (2,), np.float32),
    "scalar": lambda shape: np.float32(0.0),
    "empty": lambda shape: h5py.Empty("f4"),
}


@st.composite
def mutations(draw):
    ref = reference()
    size = len(ref["data"])
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "delete", "rename", "delete_attr",
                                 "set_attr", "replace_dataset"]))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1))
    if kind == "flip":
        return kind, draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 7)),
                                   min_size=1, max_size=3))
    if kind == "overwrite":
        return kind, (draw(st.integers(0, size - 1)), draw(st.binary(min_size=1, max_size=64)))
    if kind in ("delete", "rename"):
        return kind, draw(st.sampled_from(ref["objects"]))
    if kind == "delete_attr":
        return kind, draw(st.sampled_from(ref["attributes"]))
    if kind == "set_attr":
        return kind, (draw(st.sampled_from(ref["attributes"])), draw(junk_values()))
    return kind, (draw(st.sampled_from(ref["datasets"])), draw(st.sampled_from(sorted(REPLACEMENTS))))


def apply(path, kind, argument):
    if kind in ("truncate", "flip", "overwrite"):
        data = bytearray(reference()["data"])
        if kind == "truncate":
            data = data[:argument]
        elif kind == "flip":
            for offset, bit in argument:
                data[offset] ^= 1 << bit
        else:
            offset, chunk = argument
            data[offset:offset + len(chunk)] = chunk
        with open(path, "wb") as handle:
            handle.write(bytes(data))
        return
    with open(path, "wb") as handle:
        handle.write(reference()["data"])
    with h5py.File(path, "r+") as f:
        if kind == "delete":
            del f[argument]
        elif kind == "rename":
            f.move(argument, argument + "_renamed")
        elif kind == "delete_attr":
            name, key = argument
            del (f if name is None else f[name]).attrs[key]
        elif kind == "set_attr":
            (name, key), value = argument
            (f if name is None else f[name]).attrs[key] = value
        else:
            name, replacement = argument
            shape = f[name].shape
            del f[name]
            f[name] = REPLACEMENTS[replacement](shape)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation=mutations())
def test_damaged_file_loads_exactly_or_raises_model_file_error(mutation):
    kind, argument = mutation
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.h5")
        apply(path, kind, argument)
        check_load(path)


def test_every_structural_mutation_is_refused():
    """Deleting, renaming or retyping any object or attribute the format defines is detected."""
    ref = reference()
    cases = ([("delete", name) for name in ref["objects"]]
             + [("rename", name) for name in ref["objects"]]
             + [("delete_attr", item) for item in ref["attributes"]]
             + [("set_attr", (item, 7)) for item in ref["attributes"]]
             + [("replace_dataset", (name, "bool")) for name in ref["datasets"]])
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.h5")
        for kind, argument in cases:
            apply(path, kind, argument)
            try:
                load_model(path)
            except ModelFileError:
                continue
            raise AssertionError(f"{kind} {argument} was not detected")


def test_byte_sweep_and_truncations():
    """Flip one byte at evenly spaced offsets over the whole file, and cut it at many lengths."""
    size = len(reference()["data"])
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.h5")
        for offset in np.linspace(0, size - 1, 150).astype(int):
            apply(path, "flip", [(int(offset), 3)])
            check_load(path)
        for length in np.linspace(0, size - 1, 25).astype(int):
            apply(path, "truncate", int(length))
            check_load(path)


def test_missing_path_is_file_not_found_not_model_file_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.h5")
    with pytest.raises(FileNotFoundError):
        build_net(0).load_weights(tmp_path / "absent.h5")
