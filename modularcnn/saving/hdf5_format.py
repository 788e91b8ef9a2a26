"""The HDF5 layout of model and weights files: writing it, and reading it back with strict checks.

This module knows the file, not the network: it turns a :class:`FileContents` (JSON-able dicts and
NumPy arrays) into a file and back; :mod:`.model_io` turns a network into contents and back. Format
version 1 (``<...>`` is a name, ``*`` marks what only some files have)::

    /                               attrs: format = "modularcnn", format_version = 1,
                                           library_version, kind ("model" or "weights"),
                                           model_config*, training_config*, rng_state*, epoch*,
                                           checkpoint*, checksum
    /weights                        attrs: layer_names (JSON list, in network order)
    /weights/<layer>                attrs: weight_names (JSON list, in the layer's order)
    /weights/<layer>/<weight>       float dataset (a name with "/" nests groups)
    /optimizer*                     attrs: state_names (JSON list of "<slot>/<layer>/<weight>")
    /optimizer/iterations           int64 scalar dataset
    /optimizer/state/<state name>   float dataset

Texts are UTF-8 strings (JSON where structured) stored as fixed-length attributes, so they live in
checksummed HDF5 metadata. Version 2 has the same layout; its ``model_config`` may describe a graph
(``Model``), whose ``/weights`` lists every layer of the graph (inputs with no weights). ``checksum`` is ``"sha256:<hex>"`` over every attribute and dataset above
(see :func:`_digest`), so a damaged or edited file is refused rather than silently loaded with
different numbers. Reading never runs code: texts are parsed with :func:`json.loads` only, and every
dataset's type is checked before it is read.
"""

import dataclasses
import errno
import hashlib
import json
import os
import stat

import numpy as np

from ..errors import ModelFileError
from ..validation import MAX_ARRAY_ELEMENTS
from ..version import __version__
from .atomic import atomic_path

FORMAT = "modularcnn"
#: The version written; files of a larger version are refused with a request to upgrade.
#: Version 2 (this change) adds graph models: ``model_config`` with ``"class_name": "Model"`` (see
#: :meth:`modularcnn.Model.get_config`) and per-output compile settings in ``training_config``. The
#: layout is the same, so version 1 files (every one a ``Net``) are read as before.
FORMAT_VERSION = 2
KINDS = ("model", "weights")
# Object headers, superblock and link tables from HDF5 1.8 on carry checksums, so that damage to the
# file's structure is reported by HDF5 instead of being parsed.
_LIBVER = ("v108", "latest")
# deflate, shuffle, fletcher32, szip, nbit, scaleoffset: part of HDF5 itself. Other filters are plugins,
# shared libraries HDF5 would load from disk on reading: never for a file we did not write.
_BUILTIN_FILTERS = frozenset({1, 2, 3, 4, 5, 6})
#: A chunked dataset may declare at most this many bytes per byte it stores (plus
#: :data:`STORAGE_SLACK_BYTES`): deflate cannot do better than about 1032:1, and chunks never written
#: read as the fill value, so without this bound a 13 KB file could declare gigabytes.
MAX_EXPANSION_RATIO = 1100
STORAGE_SLACK_BYTES = 2**20


@dataclasses.dataclass
class DeclaredArray:
    """A dataset's shape and dtype from its header, before any of its data is read.

    :func:`read_file` hands these to its ``check`` in place of the arrays. ``into`` may be set by the
    check to a writeable C-contiguous array of the same shape and dtype, which the data is then read
    into directly (no second copy); it becomes the array of the returned contents.
    """

    shape: tuple
    dtype: np.dtype
    dataset: object = dataclasses.field(default=None, repr=False)
    into: np.ndarray = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass
class FileContents:
    """Everything a file holds, as plain data.

    ``weights`` maps layer name -> {weight name -> array}, both in order. ``optimizer_state`` is
    :meth:`Optimizer.get_state`'s dict (``"iterations"`` plus ``"<slot>/<layer>/<weight>"`` arrays).
    """

    kind: str
    weights: dict
    model_config: dict = None
    training_config: dict = None
    optimizer_state: dict = None
    rng_state: dict = None
    epoch: int = None
    checkpoint: dict = None
    library_version: str = __version__
    format_version: int = FORMAT_VERSION


def _h5py():
    # Imported on first use: it costs a tenth of a second and most programs never save.
    import h5py

    return h5py


def open_file(path, mode):
    """``h5py.File(path, mode)`` without HDF5 file locking (which fails on some network file systems).

    Uses h5py's ``locking=False`` where h5py (>= 3.5) and HDF5 support it, plain opening otherwise.
    """
    h5py = _h5py()
    options = {"libver": _LIBVER} if mode == "w" else {}
    try:
        return h5py.File(path, mode, locking=False, **options)
    except TypeError:  # h5py < 3.5: no locking argument
        return h5py.File(path, mode, **options)
    except ValueError as error:  # HDF5 too old for the locking property
        if "locking" not in str(error).lower():
            raise
        return h5py.File(path, mode, **options)


# ------------------------------------------------------------------------------------------------
# Names and checksums
# ------------------------------------------------------------------------------------------------


def name_problem(name):
    """Why ``name`` cannot be an HDF5 path below a group, or None when it can."""
    if not isinstance(name, str) or not name:
        return f"expected a non-empty string, got {name!r}"
    if "\0" in name:
        return f"{name!r} contains a NUL character"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return f"{name!r} has an empty, '.' or '..' path component"
    return None


def _text_entry(text):
    return hashlib.sha256(b"t" + text.encode("utf-8")).digest()


def _int_entry(value):
    return hashlib.sha256(b"i" + str(int(value)).encode("ascii")).digest()


def _array_entry(array):
    # Kind, item size, shape and little-endian bytes: the same numbers give the same entry whatever
    # byte order or dtype spelling h5py hands back.
    array = np.asarray(array)
    header = f"a{array.dtype.kind}{array.dtype.itemsize}:{array.shape}:".encode("ascii")
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
    return hashlib.sha256(header + data).digest()


def _digest(entries):
    """``"sha256:<hex>"`` over ``{label: entry digest}``, independent of the order of writing."""
    total = hashlib.sha256()
    for label in sorted(entries):
        total.update(label.encode("utf-8") + b"\0" + entries[label])
    return "sha256:" + total.hexdigest()


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


def to_json(value, what):
    """``json.dumps(value)``, or a ValueError naming ``what`` is not JSON-serialisable."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"cannot save {what}: it is not JSON-serialisable ({error})") from None


class _Writer:
    """Writes attributes and datasets, recording each one's checksum entry."""

    def __init__(self, file):
        self.file = file
        self.entries = {}

    def text(self, obj, name, text):
        encoded = text.encode("utf-8")
        h5py = _h5py()
        obj.attrs.create(name, data=np.array(encoded, dtype=f"S{max(len(encoded), 1)}"),
                         dtype=h5py.string_dtype("utf-8", max(len(encoded), 1)))
        self.entries[f"@{obj.name}:{name}"] = _text_entry(text)

    def json(self, obj, name, value, what):
        self.text(obj, name, to_json(value, what))

    def integer(self, obj, name, value):
        obj.attrs.create(name, data=np.int64(value))
        self.entries[f"@{obj.name}:{name}"] = _int_entry(value)

    def array(self, group, name, array):
        problem = name_problem(name)
        if problem:
            raise ValueError(f"cannot save {group.name}/{name}: bad name: {problem}")
        array = np.asarray(array, order="C")  # not ascontiguousarray: it turns 0-d into 1-d
        try:
            dataset = group.create_dataset(name, data=array, track_times=False)
        except (ValueError, TypeError) as error:
            raise ValueError(f"cannot save {group.name}/{name} (shape {array.shape}, dtype "
                             f"{array.dtype}): {error}") from None
        self.entries[f"#{dataset.name}"] = _array_entry(array)


def write_file(path, contents):
    """Write ``contents`` (a :class:`FileContents`) to ``path`` atomically (see :mod:`.atomic`)."""
    if contents.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {contents.kind!r}")
    with atomic_path(path) as temporary, open_file(temporary, "w") as file:
        writer = _Writer(file)
        _write_contents(writer, file, contents)
        file.attrs.create("checksum", data=np.bytes_(_digest(writer.entries)))


def _write_contents(writer, root, contents):
    writer.text(root, "format", FORMAT)
    writer.integer(root, "format_version", contents.format_version)
    writer.text(root, "library_version", contents.library_version)
    writer.text(root, "kind", contents.kind)
    for name in ("model_config", "training_config", "rng_state", "checkpoint"):
        value = getattr(contents, name)
        if value is not None:
            writer.json(root, name, value, name.replace("_", " "))
    if contents.epoch is not None:
        writer.integer(root, "epoch", contents.epoch)

    weights = root.create_group("weights")
    writer.json(weights, "layer_names", list(contents.weights), "the layer names")
    for layer_name, arrays in contents.weights.items():
        problem = name_problem(layer_name)
        if problem:
            raise ValueError(f"cannot save layer {layer_name!r}: its name is unusable in a file: {problem}")
        group = weights.create_group(layer_name)
        writer.json(group, "weight_names", list(arrays), f"the weight names of layer {layer_name!r}")
        for weight_name, array in arrays.items():
            writer.array(group, weight_name, array)

    if contents.optimizer_state is not None:
        state = dict(contents.optimizer_state)
        group = root.create_group("optimizer")
        writer.array(group, "iterations", np.asarray(state.pop("iterations", 0), dtype=np.int64))
        writer.json(group, "state_names", list(state), "the optimizer state names")
        slots = group.create_group("state")
        for name, array in state.items():
            writer.array(slots, name, array)


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------


def read_file(path, check=None):
    """Read and check a file written by :func:`write_file`; returns a :class:`FileContents`.

    Raises ``FileNotFoundError`` for a missing path and :class:`~modularcnn.ModelFileError` for
    anything else that is not an intact modularcnn file: empty, not HDF5, truncated, damaged
    (checksum), of a future format version, with missing or mistyped attributes and datasets.

    Reading has two phases, so that a file cannot make it allocate what it does not hold. First every
    attribute and every dataset's header: each dataset must declare at most
    :data:`~modularcnn.validation.MAX_ARRAY_ELEMENTS` values and, if chunked, at most
    :data:`MAX_EXPANSION_RATIO` times the bytes it stores. Then ``check(contents)`` runs, if given,
    on contents whose arrays are :class:`DeclaredArray` headers (``load_model`` compares them with the
    network the config builds, ``load_weights`` with the network's weights); only then is any data
    read, and the checksum compared.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "no such model file", path)
    if os.path.isdir(path):
        raise ModelFileError(f"{path}: is a folder, not a model file")
    if not stat.S_ISREG(os.stat(path).st_mode):
        # Opening a FIFO for reading blocks until a writer comes; a device can be endless.
        raise ModelFileError(f"{path}: is a FIFO, device or socket, not a regular model file")
    # Opening it ourselves first lets PermissionError through as itself (not as a damaged file).
    with open(path, "rb") as handle:
        if not handle.read(1):
            raise ModelFileError(f"{path}: the file is empty (an interrupted copy or download?)")
    try:
        file = open_file(path, "r")
    except Exception as error:  # h5py reports every unreadable file as OSError
        raise ModelFileError(
            f"{path}: not an HDF5 file, or a truncated or damaged one ({error})") from error
    try:
        with file:
            return _Reader(file, path).read(check)
    except _CheckFailed as failed:
        raise failed.error.with_traceback(failed.error.__traceback__) from None
    except ModelFileError:
        raise
    except MemoryError:
        raise ModelFileError(f"{path}: not enough memory to read the file's arrays "
                             f"({os.path.getsize(path):,} bytes on disk)") from None
    except Exception as error:  # HDF5 read errors on damaged data, and anything else unforeseen
        raise ModelFileError(f"{path}: damaged file ({type(error).__name__}: {error})") from error


class _CheckFailed(Exception):
    """Carries an exception raised by read_file's ``check`` past the handler for damaged files."""

    def __init__(self, error):
        super().__init__(error)
        self.error = error


class _Reader:
    """Reads one file's attributes and datasets, checking each and recording checksum entries."""

    def __init__(self, file, path):
        self.file = file
        self.path = path
        self.entries = {}

    def fail(self, message):
        raise ModelFileError(f"{self.path}: {message}")

    # -- single items -----------------------------------------------------------------------------

    def _attribute(self, obj, name, required):
        if name not in obj.attrs:
            if required:
                self.fail(f"the attribute {name!r} of {obj.name} is missing")
            return None
        return obj.attrs[name]

    def text(self, obj, name, required=True, record=True):
        value = self._attribute(obj, name, required)
        if value is None:
            return None
        if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "OSU":
            value = value.reshape(()).item()
        if isinstance(value, (bytes, np.bytes_)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                self.fail(f"the attribute {name!r} of {obj.name} is not valid UTF-8 text")
        if not isinstance(value, str):
            self.fail(f"the attribute {name!r} of {obj.name} should be text, found "
                      f"{type(value).__name__} {_short(value)}")
        value = str(value)
        if record:
            self.entries[f"@{obj.name}:{name}"] = _text_entry(value)
        return value

    def integer(self, obj, name, required=True):
        value = self._attribute(obj, name, required)
        if value is None:
            return None
        array = np.asarray(value)
        if array.size != 1 or array.dtype.kind not in "iu":
            self.fail(f"the attribute {name!r} of {obj.name} should be one integer, found "
                      f"{_short(value)} (dtype {array.dtype}, shape {array.shape})")
        value = int(array.reshape(()))
        self.entries[f"@{obj.name}:{name}"] = _int_entry(value)
        return value

    def json(self, obj, name, expected_type, required=True):
        text = self.text(obj, name, required)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as error:
            self.fail(f"the attribute {name!r} of {obj.name} is not valid JSON ({error})")
        if not isinstance(value, expected_type):
            self.fail(f"the attribute {name!r} of {obj.name} should hold a JSON "
                      f"{'object' if expected_type is dict else 'list'}, found {type(value).__name__}")
        return value

    def names(self, obj, name):
        """A JSON list of distinct, usable names (layer, weight or state names)."""
        names = self.json(obj, name, list)
        for entry in names:
            problem = name_problem(entry)
            if problem:
                self.fail(f"the attribute {name!r} of {obj.name} has a bad name: {problem}")
        if len(set(names)) != len(names):
            self.fail(f"the attribute {name!r} of {obj.name} repeats a name: {names}")
        return names

    def _member(self, parent, name, expected):
        """``parent[name]`` if it is an ``expected`` (h5py.Group or h5py.Dataset) object."""
        h5py = _h5py()
        where = f"{parent.name.rstrip('/')}/{name}"
        label = "group" if expected is h5py.Group else "dataset"
        obj = parent
        for part in name.split("/"):
            if not isinstance(obj, h5py.Group):
                self.fail(f"the {label} {where} is missing ({obj.name} is not a group)")
            # Only hard links: soft and external links could point anywhere, even to other files.
            link = obj.get(part, getlink=True)
            if link is None:
                self.fail(f"the {label} {where} is missing")
            if not isinstance(link, h5py.HardLink):
                self.fail(f"{where} is a {type(link).__name__}; only plain objects are read")
            try:
                obj = obj[part]
            except KeyError as error:  # h5py's way of saying "unreadable object"
                self.fail(f"the {label} {where} cannot be read, the file is damaged ({error})")
        if not isinstance(obj, expected):
            self.fail(f"{where} should be a {label}, found a {type(obj).__name__}")
        return obj

    def group(self, parent, name):
        return self._member(parent, name, _h5py().Group)

    def array(self, parent, name, kinds, what):
        """The dataset ``parent/name`` as an array, if its dtype kind is in ``kinds``."""
        obj = self._member(parent, name, _h5py().Dataset)
        where = obj.name
        dtype = obj.dtype
        # The kind alone rules out strings, objects, compounds, booleans and opaque data.
        if dtype.kind not in kinds:
            self.fail(f"the dataset {where} has dtype {dtype}, expected {what}")
        if obj.shape is None:
            self.fail(f"the dataset {where} has no shape (an empty dataspace), expected {what}")
        self._check_storage(obj, where)
        # Python ints: np.prod would wrap around in int64 for a forged (65536,) * 4 shape.
        elements = 1
        for size in obj.shape:
            elements *= int(size)
        if elements > MAX_ARRAY_ELEMENTS:
            self.fail(f"the dataset {where} declares shape {obj.shape} ({elements:,} values), more "
                      f"than the {MAX_ARRAY_ELEMENTS:,} (MAX_ARRAY_ELEMENTS) a layer may hold; refused "
                      "before reading it")
        expected_bytes = elements * dtype.itemsize
        stored = obj.id.get_storage_size()
        # Contiguous data must all be on disk; a shortfall means a truncated or forged dataset.
        if obj.chunks is None and stored < expected_bytes:
            self.fail(f"the dataset {where} of shape {obj.shape} holds only "
                      f"{stored} of its {expected_bytes} bytes")
        if obj.chunks is not None and expected_bytes > stored * MAX_EXPANSION_RATIO + STORAGE_SLACK_BYTES:
            self.fail(f"the dataset {where} declares shape {obj.shape} ({expected_bytes:,} bytes) but "
                      f"stores only {stored:,} bytes: more than {MAX_EXPANSION_RATIO}:1 (a "
                      "decompression bomb, or chunks never written); refused before reading it")
        return DeclaredArray(tuple(int(d) for d in obj.shape), np.dtype(dtype).newbyteorder("="),
                             dataset=obj)

    def load(self, declared):
        """Read the data of a :class:`DeclaredArray` (into ``declared.into`` when the check set it)."""
        obj = declared.dataset
        if declared.into is not None:
            target = declared.into
            if (target.shape != declared.shape or target.dtype != declared.dtype
                    or not target.flags.c_contiguous or not target.flags.writeable):
                raise ValueError(f"read_file: cannot read {obj.name} into an array of shape "
                                 f"{target.shape} and dtype {target.dtype}")
            if target.size:
                obj.read_direct(target)
            array = target
        else:
            array = np.asarray(obj[()])
            array = array.astype(array.dtype.newbyteorder("="), copy=False)
        self.entries[f"#{obj.name}"] = _array_entry(array)
        return array

    def load_all(self, contents):
        """Replace every :class:`DeclaredArray` of ``contents`` by its data."""
        contents.weights = {layer: {name: self.load(declared) for name, declared in arrays.items()}
                            for layer, arrays in contents.weights.items()}
        if contents.optimizer_state is not None:
            contents.optimizer_state = {
                name: (self.load(value) if isinstance(value, DeclaredArray) else value)
                for name, value in contents.optimizer_state.items()}

    def _check_storage(self, dataset, where):
        """Refuse data kept outside the file or behind filters HDF5 would load as plugins."""
        plist = dataset.id.get_create_plist()
        if dataset.is_virtual or plist.get_external_count() > 0:
            self.fail(f"the dataset {where} keeps its data outside the file; refused")
        for index in range(plist.get_nfilters()):
            code = plist.get_filter(index)[0]
            if code not in _BUILTIN_FILTERS:
                self.fail(f"the dataset {where} uses HDF5 filter {code}, which is not built into HDF5")

    # -- the whole file ---------------------------------------------------------------------------

    def read(self, check=None):
        root = self.file
        file_format = self.text(root, "format", required=False)
        if file_format != FORMAT:
            self.fail("not a modularcnn model file (no 'format' attribute)" if file_format is None
                      else f"not a modularcnn model file (format {file_format!r})")
        version = self.integer(root, "format_version")
        library_version = self.text(root, "library_version")
        if version > FORMAT_VERSION:
            self.fail(f"written by a newer modularcnn ({library_version}, file format {version}); this "
                      f"is modularcnn {__version__}, which reads formats up to {FORMAT_VERSION}: "
                      "upgrade modularcnn to load it")
        if version < 1:
            self.fail(f"invalid format_version {version}")
        kind = self.text(root, "kind")
        if kind not in KINDS:
            self.fail(f"kind must be one of {KINDS}, found {kind!r}")
        contents = FileContents(
            kind=kind,
            weights=self._weights(self.group(root, "weights")),
            model_config=self.json(root, "model_config", dict, required=kind == "model"),
            training_config=self.json(root, "training_config", dict, required=False),
            rng_state=self.json(root, "rng_state", dict, required=kind == "model"),
            epoch=self.integer(root, "epoch", required=False),
            checkpoint=self.json(root, "checkpoint", dict, required=False),
            library_version=library_version,
            format_version=version,
        )
        if contents.epoch is not None and contents.epoch < 0:
            self.fail(f"epoch must be >= 0, found {contents.epoch}")
        has_optimizer = "optimizer" in root
        if contents.training_config is not None and not has_optimizer:
            self.fail("the model is compiled (training_config) but the group /optimizer is missing")
        if has_optimizer:
            if contents.training_config is None:
                self.fail("the group /optimizer is present but the attribute 'training_config' is missing")
            contents.optimizer_state = self._optimizer(self.group(root, "optimizer"))
        stored = self.text(root, "checksum", record=False)
        if check is not None:
            try:
                check(contents)  # on the declared shapes: nothing has been read yet
            except ModelFileError as error:
                raise _CheckFailed(error) from error  # refused by the check, before any data is read
            except Exception as error:
                # A damaged file is reported as damaged, not as whatever its damage looks like to the
                # check: the data is read (bounded by the checks above) to compare the checksum.
                self.load_all(contents)
                if stored != _digest(self.entries):
                    self.fail("checksum mismatch: the file was damaged (or edited) after it was saved")
                raise _CheckFailed(error) from error  # the caller's own error, passed on as it is
        self.load_all(contents)
        if stored != _digest(self.entries):
            self.fail("checksum mismatch: the file was damaged (or edited) after it was saved")
        return contents

    def _weights(self, group):
        weights = {}
        for layer_name in self.names(group, "layer_names"):
            layer_group = self.group(group, layer_name)
            weights[layer_name] = {
                name: self.array(layer_group, name, "f", "floating-point numbers")
                for name in self.names(layer_group, "weight_names")
            }
        return weights

    def _optimizer(self, group):
        iterations = self.array(group, "iterations", "iu", "an integer")
        if iterations.shape != ():
            self.fail(f"/optimizer/iterations should be one integer >= 0, found shape {iterations.shape}")
        iterations = self.load(iterations)
        if int(iterations) < 0:
            self.fail(f"/optimizer/iterations should be one integer >= 0, found shape "
                      f"{iterations.shape} {_short(iterations)}")
        state = {"iterations": np.asarray(iterations, dtype=np.int64)}
        names = self.names(group, "state_names")
        slots = self.group(group, "state")
        for name in names:
            if name == "iterations":
                self.fail("the state name 'iterations' is reserved")
            state[name] = self.array(slots, name, "f", "floating-point numbers")
        return state


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
