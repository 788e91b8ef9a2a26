"""Files that Keras writes, read with NumPy and h5py alone, and Keras 3 ``.keras`` archives written.

Three layouts are read, recognised by their content (never by the suffix):

- **Keras 3 archive** (``model.keras``): a zip holding ``config.json`` (the model's config),
  ``metadata.json`` and ``model.weights.h5``, where each layer's arrays are stored by position,
  ``layers/<path>/vars/0, 1, ...``; ``<path>`` is the snake-case class name with a counter per class
  (``conv2d``, ``conv2d_1``, ...), in the order of the model's layers.
- **Keras HDF5 model** (``model.h5``, written by Keras 2, tf.keras or Keras 3's legacy ``.h5``
  saving): root attribute ``model_config`` (JSON) and group ``model_weights`` with ``layer_names``;
  each layer group lists its datasets in its ``weight_names`` attribute (``conv2d/kernel:0``), which
  are always read rather than guessed.
- **Weights only**: a Keras 3 ``.weights.h5`` (the archive's weights file on its own) or a Keras 2
  ``save_weights`` HDF5 file (``layer_names`` at the root), for :func:`load_keras_weights` into a
  network of the same architecture.

Safety, as for our own files: nothing is unpickled, evaluated or imported; zip members are never
extracted to disk (names with ``..`` or absolute paths are refused anyway), each is read with a
bounded size (zip bombs stop at the bound), every dataset's shape and type is checked against the
layer it is meant for before it is read.
"""

import datetime
import io
import json
import os
import stat
import zipfile

import numpy as np

from .. import validation
from ..errors import ModelFileError
from ..layers.base import snake_case
from ..version import __version__
from . import keras_functional, keras_layers
from .atomic import atomic_path
from .hdf5_format import open_file

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: The largest ``config.json`` read from an archive (a model config is kilobytes).
MAX_CONFIG_BYTES = 16 * 2**20
#: The largest weights file read from an archive (it is held in memory while the arrays are copied).
MAX_WEIGHTS_BYTES = 4 * 2**30
#: Keras's version that the archives we write claim (the format of Keras 3).
WRITTEN_KERAS_VERSION = "3.5.0"


# ------------------------------------------------------------------------------------------------
# Recognising a file
# ------------------------------------------------------------------------------------------------

def sniff(path):
    """``"zip"``, ``"hdf5"`` or None, from the first bytes of the regular file at ``path``.

    Raises ``FileNotFoundError`` for a missing path and ``ModelFileError`` for something that is not a
    regular file (a folder, a FIFO, a device), which would otherwise block or mislead a reader.
    """
    path = validation.file_path(path, "path", "load")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(2, "no such model file", path) from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
        raise ModelFileError(f"{path}: is {what}, not a model file")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head == HDF5_MAGIC:
        return "hdf5"
    return None


def keras_hdf5_kind(file):
    """``"model"``, ``"weights"`` (Keras 2), ``"weights3"`` (Keras 3) or None for an open h5py file."""
    attrs = file.attrs
    if "format" in attrs:  # ours
        return None
    if "model_config" in attrs and "model_weights" in file:
        return "model"
    if "layer_names" in attrs:
        return "weights"
    if "layers" in file or "vars" in file:
        return "weights3"
    return None


def is_keras_file(path):
    """True when ``path`` holds a Keras archive or a Keras HDF5 file (model or weights)."""
    kind = sniff(path)
    if kind == "zip":
        return True
    if kind != "hdf5":
        return False
    try:
        with open_file(path, "r") as file:
            return keras_hdf5_kind(file) is not None
    except Exception:  # noqa: BLE001 - h5py raises many types for a damaged file: it is not Keras's
        return False


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------

def _text(value, what, bad):
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8", errors="strict")
    if not isinstance(value, str):
        raise bad(f"{what} should be text, found {type(value).__name__}")
    return value


def _json(text, what, bad):
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise bad(f"{what} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise bad(f"{what} should be a JSON object")
    return value


def _read_member(archive, name, limit, bad):
    """The bytes of archive member ``name``, refusing it past ``limit`` bytes (whatever it declares)."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise bad(f"the archive has no {name!r} (members: {archive.namelist()[:10]})") from None
    if info.file_size > limit:
        raise bad(f"{name} declares {info.file_size:,} bytes, more than the {limit:,} accepted")
    chunks, total = [], 0
    try:
        with archive.open(info) as member:
            while True:
                chunk = member.read(2**20)
                if not chunk:
                    break
                total += len(chunk)
                if total > min(limit, info.file_size):
                    raise bad(f"{name} inflates past its declared {info.file_size:,} bytes "
                              "(a zip bomb, or a damaged archive)")
                chunks.append(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as error:
        raise bad(f"cannot read {name} from the archive ({error})") from None
    except RuntimeError as error:  # encrypted members
        raise bad(f"cannot read {name} from the archive ({error})") from None
    return b"".join(chunks)


def _open_archive(path, bad):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise bad(f"not a readable zip archive, or a truncated one ({error})") from None
    names = archive.namelist()
    for name in names:
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or ":" in name:
            archive.close()
            raise bad(f"the archive holds a member with an unsafe path {name!r}")
    if len(set(names)) != len(names):
        archive.close()
        raise bad("the archive holds two members of the same name")
    return archive


def read_archive(path, bad):
    """``(config dict, h5py.File of the weights)`` of a Keras 3 archive; the caller closes the file."""
    import h5py

    with _open_archive(path, bad) as archive:
        config = _json(_read_member(archive, "config.json", MAX_CONFIG_BYTES, bad).decode(
            "utf-8", errors="replace"), "config.json", bad)
        weights = _read_member(archive, "model.weights.h5", MAX_WEIGHTS_BYTES, bad)
    try:
        return config, h5py.File(io.BytesIO(weights), "r")
    except (OSError, ValueError) as error:
        raise bad(f"model.weights.h5 in the archive is not a readable HDF5 file ({error})") from None


def _model_layers(config, bad):
    """``(input_shape or None, [(class_name, config)], dtype)`` of a Keras Sequential model config."""
    class_name = config.get("class_name")
    if class_name != "Sequential":
        raise bad(f"the file holds a {class_name!r}, not a Keras Sequential model")
    body = config.get("config")
    if not isinstance(body, dict):
        raise bad("the model config has no 'config' object")
    entries = body.get("layers")
    if not isinstance(entries, list) or not entries:
        raise bad("the model config lists no layers")
    layers, input_shape = [], None
    for index, entry in enumerate(entries):
        name, layer_config = keras_layers.unwrap_entry(entry, f"{bad.where} layer {index}",
                                                       extra=keras_functional.NESTED_CLASSES)
        declared = keras_layers.input_shape_of(name, layer_config)
        if declared is not None and input_shape is None:
            input_shape = declared
        if name != "InputLayer":
            layers.append((name, layer_config))
    if input_shape is None:
        built = body.get("build_input_shape") or config.get("build_config", {}).get("input_shape")
        if isinstance(built, list) and len(built) >= 2:
            input_shape = tuple(built[1:])
    if input_shape is None or any(not isinstance(d, int) or isinstance(d, bool) or d < 1
                                  for d in input_shape):
        raise bad(f"the model declares no complete input shape (found {input_shape}); modularcnn "
                  "needs every per-sample dimension")
    dtype = body.get("dtype")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    dtype = "float64" if dtype == "float64" else "float32"
    return tuple(input_shape), layers, dtype, body.get("name")


class _Bad:
    """Makes ``ModelFileError``\\ s that start with the file's path."""

    def __init__(self, where):
        self.where = where

    def __call__(self, message):
        return ModelFileError(f"{self.where}: {message}")


def _fold_zero_padding(layers):
    """Merge ``ZeroPadding{1,2,3}D`` + a ``"valid"`` convolution of the same rank into one entry.

    ``Conv2D(pad=((1, 1), (2, 2)))`` is what modularcnn calls it, and it is what a ``.keras`` file we
    write spells as two layers. Other ZeroPadding layers are left for the table to read.
    """
    folded, index = [], 0
    while index < len(layers):
        name, config = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        rank = name[len("ZeroPadding"):-1] if name.startswith("ZeroPadding") else None
        if rank and following and following[0] == f"Conv{rank}D" \
                and following[1].get("padding") == "valid" and following[1].get("dilation_rate") \
                in (None, 1, [1] * int(rank)):
            pads = _zero_pads(config.get("padding", 1), int(rank))
            if pads is not None and config.get("data_format") in (None, "channels_last"):
                merged = dict(following[1])
                merged["padding"] = "valid"
                folded.append((following[0], merged, pads, (name, config.get("name"))))
                index += 2
                continue
        folded.append((name, config, None, None))
        index += 1
    return folded


def _zero_pads(padding, rank):
    """Keras ZeroPadding's ``padding`` as ``((before, after),) * rank``, or None if malformed."""
    if isinstance(padding, int) and not isinstance(padding, bool):
        return ((padding, padding),) * rank
    if isinstance(padding, list) and len(padding) == rank:
        pads = []
        for item in padding:
            if isinstance(item, int) and not isinstance(item, bool):
                pads.append((item, item))
            elif isinstance(item, list) and len(item) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in item):
                pads.append(tuple(item))
            else:
                return None
        return tuple(pads)
    return None


def build_model(config, bad, weight_bytes, keras2=False):
    """``(network, made)`` for a Keras model config: a ``Net`` for a Sequential model, a ``Model`` for
    a functional one (see :func:`build_network` and :func:`.keras_functional.build_functional`)."""
    if not isinstance(config, dict):
        raise bad("the model config should be a JSON object")
    if keras_functional.is_functional(config):
        return keras_functional.build_functional(config, bad, weight_bytes, keras2)
    return build_network(config, bad, weight_bytes, keras2=keras2)


def build_network(config, bad, weight_bytes, keras2=False, limits=None, depth=0):
    """A new ``Net`` for a Keras Sequential config, its layers in order, and each one's Keras entry.

    Returns ``(net, made)`` where ``made[i]`` is ``(class_name, name, [layers it made], children)``
    for the i-th Keras layer (InputLayer excluded; a folded ZeroPadding has no layers of its own;
    ``children`` is a nested model's own list, else None).
    """
    from ..layers.nested import as_layer
    from ..net import Net

    limits = limits or keras_functional.Limits(bad)
    input_shape, layers, dtype, name = _model_layers(config, bad)
    limits.add_layers(len(layers))
    # Keras stores every weight uncompressed, in at least a float32's 4 bytes: a config declaring more
    # than the file can hold is refused as soon as the layer is added (built with lazily allocated
    # zeros, it has cost no memory yet).
    budget = weight_bytes // 4 + 1
    net = Net(input_shape=input_shape, dtype=dtype, name=name if isinstance(name, str) else None)
    made = []
    for index, (class_name, layer_config, pads, padding_name) in enumerate(_fold_zero_padding(layers)):
        where = f"{bad.where} layer {index}"
        rank = len(net.output_shape)
        children = None
        if class_name in keras_functional.NESTED_CLASSES:
            inner, children = keras_functional.build_nested(
                {"class_name": class_name, "config": layer_config}, bad, weight_bytes, keras2, limits,
                depth + 1)
            try:
                layer = as_layer(inner)
            except ValueError as error:
                raise bad(f"layer {layer_config.get('name')!r} ({class_name}): {error}") from None
        else:
            layer = keras_layers.layer_from_keras(
                class_name, layer_config, rank, where,
                padding=None if pads is None else [list(p) for p in pads], keras2=keras2)
        if pads is not None:
            made.append((*padding_name, [], None))
        try:
            net.add(layer)
        except ValueError as error:
            raise bad(f"layer {layer_config.get('name')!r} ({class_name}): {error}") from None
        except MemoryError:
            raise bad(f"layer {layer_config.get('name')!r} ({class_name}) declares more weights "
                      "than fit in memory") from None
        if net.count_params() > budget:
            raise bad(f"layer {layer_config.get('name')!r} ({class_name}) brings the model to "
                      f"{net.count_params():,} weights, more than the {weight_bytes:,} bytes of "
                      "weights in the file can hold")
        made.append((class_name, layer_config.get("name"), [layer], children))
    return net, made


def _dataset(group, name, target, where, bad):
    """The array ``group[name]`` for ``target``, its shape and type checked before it is read."""
    import h5py

    node = group.get(name)
    if not isinstance(node, h5py.Dataset):
        raise bad(f"{where}: no dataset {name!r} in {group.name}")
    if node.dtype.kind not in "fiu":
        raise bad(f"{where}: {group.name}/{name} holds {node.dtype}, not numbers")
    if node.id.get_create_plist().get_nfilters():
        # Keras writes weights uncompressed; a compressed dataset could inflate far past the file.
        raise bad(f"{where}: {group.name}/{name} is stored compressed or filtered, which Keras never "
                  "writes")
    if tuple(node.shape) != tuple(target.shape):
        raise bad(f"{where}: {group.name}/{name} has shape {tuple(node.shape)}, the layer needs "
                  f"{tuple(target.shape)}")
    try:
        return node[()]
    except (OSError, ValueError) as error:
        raise bad(f"{where}: cannot read {group.name}/{name} ({error})") from None


def _positional_copies(file, made, bad, prefix="layers"):
    """Copies for a Keras 3 weights file: ``layers/<path>/vars/<k>`` by position, in model order; a
    nested model's layers under ``layers/<its path>/layers/...``."""
    import h5py

    copies, counts = [], {}
    root = file.get(prefix)
    for class_name, name, layers, children in made:
        key = snake_case(class_name)
        path = key if key not in counts else f"{key}_{counts[key]}"
        counts[key] = counts.get(key, 0) + 1
        if children is not None:
            copies.extend(_positional_copies(file, children, bad, prefix=f"{prefix}/{path}/layers"))
            continue
        targets = [array for layer in layers for array in layer.params.values()]
        if not targets:
            continue
        group = root.get(f"{path}/vars") if isinstance(root, h5py.Group) else None
        if not isinstance(group, h5py.Group):
            raise bad(f"layer {name!r} ({class_name}): no group {prefix}/{path}/vars in the weights")
        stored = sorted((k for k in group if k.isdigit()), key=int)
        if len(stored) != len(targets):
            raise bad(f"layer {name!r}: the file holds {len(stored)} arrays, the layer has "
                      f"{len(targets)}")
        for k, target in zip(stored, targets):
            copies.append((target, _dataset(group, k, target, f"layer {name!r}", bad)))
    return copies


def _named_copies(group_of_layers, layer_names, made, bad):
    """Copies for a Keras HDF5 file: each layer group's ``weight_names``, matched to our params."""
    import h5py

    copies = []
    by_name = {name: layers for _, name, layers, _ in made if layers}
    for name in layer_names:
        group = group_of_layers.get(name)
        if not isinstance(group, h5py.Group):
            raise bad(f"no weights group for layer {name!r}")
        weight_names = [_text(w, f"weight_names of {name!r}", bad)
                        for w in np.atleast_1d(group.attrs.get("weight_names", []))]
        layers = by_name.get(name)
        targets = [] if layers is None else [(k, v) for layer in layers for k, v in layer.params.items()]
        if not weight_names and not targets:
            continue
        if layers is None:
            raise bad(f"the weights group {name!r} matches no layer of the model")
        if len(weight_names) != len(targets):
            raise bad(f"layer {name!r}: the file lists {len(weight_names)} arrays {weight_names}, the "
                      f"layer has {len(targets)} {[k for k, _ in targets]}")
        short = [w.split("/")[-1].split(":")[0] for w in weight_names]
        by_suffix = _by_suffix(weight_names, [k for k, _ in targets])
        if by_suffix is not None:  # a nested model's "inner_layer/kernel" keys
            pairs = [(target, by_suffix[key]) for key, target in targets]
        elif sorted(short) == sorted(k for k, _ in targets):
            order = {k: i for i, k in enumerate(short)}
            pairs = [(target, weight_names[order[key]]) for key, target in targets]
        else:  # names of another convention: Keras's order is the layer's own
            pairs = [(target, weight) for (_, target), weight in zip(targets, weight_names)]
        for target, weight in pairs:
            copies.append((target, _dataset(group, weight, target, f"layer {name!r}", bad)))
    missing = [name for _, name, layers, _ in made
               if layers and any(l.params for l in layers) and name not in layer_names]
    if missing:
        raise bad(f"the file has no weights for layers {missing}")
    return copies


def _by_suffix(weight_names, keys):
    """``{key: weight name}`` when each of our multi-part keys (``"conv2d/kernel"``) is the end of
    exactly one weight name (``"block/conv2d/kernel:0"``), else None."""
    if not keys or all("/" not in k for k in keys):
        return None
    plain = {w: "/".join(part.split(":")[0] for part in w.split("/")) for w in weight_names}
    found = {}
    for key in keys:
        matches = [w for w, p in plain.items() if p == key or p.endswith("/" + key)]
        if len(matches) != 1:
            return None
        found[key] = matches[0]
    return found if len(set(found.values())) == len(found) else None


def load_keras_model(path):
    """A ``Net`` from a Keras archive or Keras HDF5 model file (Sequential), with Keras's weights.

    The network is not compiled (Keras's optimizer state is not carried over): ``compile`` it to train.
    """
    where = os.fspath(path)
    bad = _Bad(where)
    kind = sniff(path)
    if kind == "zip":
        config, file = read_archive(path, bad)
        with file:
            net, made = build_model(config, bad, file.id.get_filesize())
            copies = _positional_copies(file, made, bad)
    elif kind == "hdf5":
        try:
            file = open_file(path, "r")
        except (OSError, ValueError) as error:
            raise bad(f"not a readable HDF5 file ({error})") from None
        with file:
            file_kind = keras_hdf5_kind(file)
            if file_kind != "model":
                raise bad("the file holds Keras weights only: build the network and call "
                          "net.load_weights(path)" if file_kind else "not a Keras model file")
            config = _json(_text(file.attrs["model_config"], "model_config", bad), "model_config", bad)
            version = _text(file.attrs.get("keras_version", b"3"), "keras_version", bad)
            net, made = build_model(config, bad, os.path.getsize(path),
                                    keras2=version.startswith(("1.", "2.")))
            group = file["model_weights"]
            names = [_text(n, "layer_names", bad) for n in np.atleast_1d(group.attrs.get("layer_names", []))]
            copies = _named_copies(group, names, made, bad)
    else:
        raise bad("neither a Keras archive nor an HDF5 file")
    for target, source in copies:
        np.copyto(target, source, casting="unsafe")
    # Keras's own order of the layers, which weights-only files of the same model follow.
    net._keras_made = made
    return net


def load_keras_weights(net, path):
    """Copy the arrays of a Keras weights file (or a whole Keras model file) into ``net``, in place.

    Keras 3 ``.weights.h5`` files store arrays by position (``layers/<class>_<k>/vars/<i>``), so
    ``net`` must have Keras's layer order and kinds; legacy files are matched by layer name. Every
    shape is checked before anything changes.
    """
    where = os.fspath(path)
    bad = _Bad(where)
    made = getattr(net, "_keras_made", None) or _made_of(net)
    kind = sniff(path)
    if kind == "zip":
        _, file = read_archive(path, bad)
    elif kind == "hdf5":
        file = open_file(path, "r")
    else:
        raise bad("neither a Keras archive nor an HDF5 file")
    with file:
        file_kind = "weights3" if kind == "zip" else keras_hdf5_kind(file)
        if file_kind == "weights3":
            copies = _positional_copies(file, made, bad)
        elif file_kind in ("weights", "model"):
            group = file["model_weights"] if file_kind == "model" else file
            names = [_text(n, "layer_names", bad) for n in np.atleast_1d(group.attrs["layer_names"])]
            copies = _named_copies(group, names, made, bad)
        else:
            raise bad("not a Keras weights file")
    for target, source in copies:
        np.copyto(target, source, casting="unsafe")


def _made_of(net):
    """``made`` (as :func:`build_model` returns it) for a network of ours: its Keras layers in the
    order :func:`save_keras` writes them, so Keras 3 weights files address them by position."""
    def convert(tree):
        return [(entry["class_name"], entry["config"].get("name"), layers,
                 None if children is None else convert(children))
                for entry, _, layers, children in tree]

    return convert(keras_tree(net, strict=False))


# ------------------------------------------------------------------------------------------------
# Writing a Keras 3 archive
# ------------------------------------------------------------------------------------------------

def _policy(dtype):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": np.dtype(dtype).name},
            "registered_name": None}


def _input_entry(name, shape, dtype):
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": [None, *shape], "dtype": np.dtype(dtype).name, "sparse": False,
                       "name": name},
            "registered_name": None}


def keras_tree(net, strict=True):
    """The Keras 3 layers of ``net`` (a Net or a Model): ``[(entry, arrays, [layer] or [], children)]``
    in the config's order; ``children`` is a nested model's own tree (else None), ``arrays`` the
    entry's variables in Keras's order. ``strict=False`` lists a layer with no Keras equivalent under
    its own class name instead of raising (for reading weights by position)."""
    if hasattr(net, "graph"):
        return keras_functional.functional_tree(net, _layer_items, strict)
    items, used = [], {layer.name for layer in net.layers}
    shape = net.input_shape
    for layer in net.layers:
        items.extend(_layer_items(layer, shape, used, strict))
        shape = layer.output_shape
    return items


def _layer_items(layer, input_shape, used, strict):
    """The tree items of one layer of ours (a nested network becomes one entry with children)."""
    network = getattr(layer, "model", None) if type(layer).__name__ == "NestedModel" else None
    if network is not None:
        config = keras_config(network)
        config["config"]["name"] = layer.name
        return [({**config, "name": layer.name}, [], [layer], keras_tree(network, strict))]
    try:
        entries = keras_layers.layer_entries(layer, input_shape, used)
    except ValueError:
        if strict:
            raise
        return [({"class_name": type(layer).__name__, "config": {"name": layer.name}}, [], [layer],
                 None)]
    return [(entry, arrays, [layer] if takes else [], None) for entry, arrays, takes in entries]


def keras_config(net):
    """The ``config.json`` of a Keras 3 model computing what ``net`` computes: Sequential for a
    ``Net``, Functional for a ``Model``."""
    if hasattr(net, "graph"):
        return keras_functional.functional_config(net, _layer_items)
    tree = keras_tree(net)
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": net.name, "trainable": net.trainable, "dtype": _policy(net.dtype),
                       "layers": [_input_entry("input_layer", net.input_shape, net.dtype),
                                  *(entry for entry, _, _, _ in tree)]},
            "registered_name": None,
            "build_config": {"input_shape": [None, *net.input_shape]}}


def _write_tree(group, tree):
    """``<path>/vars/<k>`` per entry, ``<path>/layers/...`` for a nested model (Keras's layout)."""
    counts = {}
    for entry, arrays, _, children in tree:
        key = snake_case(entry["class_name"])
        path = key if key not in counts else f"{key}_{counts[key]}"
        counts[key] = counts.get(key, 0) + 1
        own = group.create_group(path)
        variables = own.create_group("vars")
        variables.attrs["name"] = entry["config"]["name"]
        for index, array in enumerate(arrays):
            variables.create_dataset(str(index), data=array)
        if children is not None:
            _write_tree(own.create_group("layers"), children)


def _weights_file_bytes(net):
    """The ``model.weights.h5`` of the archive, in memory."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.create_group("vars").attrs["name"] = net.name
        _write_tree(file.create_group("layers"), keras_tree(net))
    return buffer.getvalue()


def save_keras(net, path):
    """Write ``net`` (a Net or a Model) as a Keras 3 archive at ``path`` (atomically), which
    ``keras.models.load_model`` opens. Raises ``ValueError`` naming the first layer that has no Keras
    equivalent, before anything is written."""
    if not net.layers:
        raise ValueError("save: the network has no layers")
    config = json.dumps(keras_config(net))
    weights = _weights_file_bytes(net)
    metadata = json.dumps({"keras_version": WRITTEN_KERAS_VERSION,
                           "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                           "written_by": f"modularcnn {__version__}"})
    with atomic_path(path) as temporary:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("metadata.json", metadata)
            archive.writestr("config.json", config)
            archive.writestr("model.weights.h5", weights)
