"""Networks to files and back: whole models (:func:`save_model`, :func:`load_model`) and weights alone
(:func:`save_weights`, :func:`load_weights`).

A model file holds everything that decides what the network computes next: the architecture, every
layer's arrays (batch-norm moving statistics included), the compile settings, the optimizer's
configuration, step count and state arrays, and the state of the network's random generator (which
drives dropout, shuffling, validation splits and augmentation). So a loaded model predicts bit for bit
what the saved one did, and ``fit`` continues exactly as the saved network would have continued.

Loading rebuilds layers only from the layer registry (``@modularcnn.layers.register_layer``) or
``custom_objects``, and checks every array's shape and dtype against the rebuilt layers before
anything is assigned. The file layout is described in :mod:`.hdf5_format`.
"""

import numbers
import os
import re

import numpy as np

from .. import initializers, losses, optimizers, validation
from .. import metrics as metrics_module
from ..errors import ModelFileError
from ..layers.base import Layer, get_layer_class
from . import keras_format
from .hdf5_format import FileContents, read_file, to_json, write_file

__all__ = ["file_info", "load_model", "load_weights", "save_model", "save_weights"]


# ------------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------------


def save_model(net, path, *, epoch=None, checkpoint=None):
    """Write the whole network to the HDF5 file ``path``, atomically (replacing any file there).

    A path ending in ``.keras`` gets a Keras 3 archive instead (architecture and weights, which
    ``keras.models.load_model`` opens; see :mod:`.keras_format`), as in Keras.

    Parameters
    ----------
    net : Net
    path : str or os.PathLike
    epoch : int, optional
        Number of epochs trained, stored in the file; defaults to what ``net.history`` says.
    checkpoint : dict, optional
        JSON data recorded by :class:`~modularcnn.callbacks.ModelCheckpoint` (monitor, best score).

    On an MPI rank other than 0, once ``net`` has trained with ``strategy="mpi"``, nothing is written
    (:func:`written_by_another_rank`).
    """
    if written_by_another_rank(net):
        return
    if validation.file_path(path, "path", "save").endswith(".keras"):
        keras_format.save_keras(net, path)
        return
    training_config = optimizer_state = None
    if net.compiled:
        training_config = _training_config(net)
        optimizer_state = net.optimizer.get_state()
    config = net.get_config()
    for layer, entry in zip(net.layers, config["layers"]):
        to_json(entry, f"the config of layer {layer.describe()}")  # names the culprit
    write_file(path, FileContents(
        kind="model", weights=_weights_of(net), model_config=config,
        training_config=training_config, optimizer_state=optimizer_state,
        rng_state=_network_rng_state(net), epoch=_epochs_trained(net, epoch), checkpoint=checkpoint,
    ))


def _per_output_compile(net):
    """True for a Model whose compile settings are per output (several outputs, or loss weights)."""
    names = getattr(net, "output_names", None)
    return names is not None and (len(names) > 1 or net.loss_weights not in (None, [1.0]))


def _training_config(net):
    """The compile settings as JSON data: a Net's form, or for a Model compiled per output its
    losses, ``loss_weights`` and each output's metrics (``output_metrics``)."""
    config = {"optimizer": optimizers.serialize(net.optimizer)}
    if _per_output_compile(net):
        config["loss"] = [losses.serialize(loss) for loss in net.output_losses]
        config["loss_weights"] = list(net.loss_weights)
        config["output_metrics"] = [[metrics_module.serialize(metrics_module.get(entry)) for entry in entries]
                                    for entries in net.metric_specs]
        return config
    config["loss"] = losses.serialize(net.loss)
    config["metrics"] = [{"name": name, "metric": metrics_module.serialize(metric)}
                         for name, metric in net.metrics]
    return config


def _network_rng_state(net):
    """The network's generator state and, under ``"layers"``, those of layers seeded on their own
    (``Dropout(seed=...)``), by layer path (``block/dropout`` inside a residual block)."""
    state = encode_rng_state(net.rng)
    own = {path: encode_rng_state(layer.random) for path, layer in seeded_layers(net.layers)}
    if own:
        state["layers"] = own
    return state


def seeded_layers(layers, prefix=""):
    """``(path, layer)`` for every layer (sublayers included) with its own generator."""
    for layer in layers:
        path = f"{prefix}{layer.name}"
        if layer.owns_generator:
            yield path, layer
        yield from seeded_layers(layer.sublayers, prefix=f"{path}/")


def save_weights(net, path, *, epoch=None, checkpoint=None):
    """Write only the layers' arrays (``params``, moving statistics included) to ``path``, atomically
    (on MPI's rank 0 alone, as :func:`save_model`)."""
    if written_by_another_rank(net):
        return
    write_file(path, FileContents(kind="weights", weights=_weights_of(net),
                                  epoch=_epochs_trained(net, epoch), checkpoint=checkpoint))


def written_by_another_rank(net):
    """Whether ``net`` trained with ``strategy="mpi"`` on a rank other than 0. The ranks hold the same
    weights, and rank 0 writes the job's files (as the chief of Keras's MultiWorkerMirroredStrategy
    does), so that N ranks never race to write one path (or N copies, on N machines)."""
    return getattr(net, "_distributed_rank", 0) != 0


def _weights_of(net):
    return {layer.name: {key: np.asarray(value) for key, value in layer.params.items()}
            for layer in net.layers}


def _epochs_trained(net, epoch):
    if epoch is not None:
        return int(epoch)
    history = getattr(net, "history", None)
    if history is not None and history.epoch:
        return int(history.epoch[-1]) + 1
    return None


def encode_rng_state(generator):
    """The generator's PCG64 state as JSON data; its 128-bit integers become decimal strings."""
    state = generator.bit_generator.state
    if state.get("bit_generator") != "PCG64":
        raise ValueError(
            f"cannot save the network's random generator: only PCG64 (numpy's default_rng, which Net "
            f"uses) is supported, got {state.get('bit_generator')!r}"
        )
    return {
        "bit_generator": "PCG64",
        "state": {"state": str(int(state["state"]["state"])), "inc": str(int(state["state"]["inc"]))},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": str(int(state["uinteger"])),
    }


# ------------------------------------------------------------------------------------------------
# Loading a whole model
# ------------------------------------------------------------------------------------------------


def load_model(path, custom_objects=None):
    """Rebuild the network saved by :func:`save_model` (or ``Net.save``) at ``path``.

    Files written by Keras open too, recognised by their content: ``.keras`` archives, Keras HDF5
    model files (Keras 2, tf.keras and Keras 3); see :mod:`.keras_format` for what is supported.
    Those come back uncompiled.

    Parameters
    ----------
    path : str or os.PathLike
    custom_objects : dict, optional
        ``{name: object}`` for what the library does not know by name: layer classes not registered
        with ``@register_layer``, custom ``Optimizer`` or ``Loss`` subclasses and ``Initializer``
        classes (by class name), or plain initializer functions (by function name).

    Returns
    -------
    Net
        Compiled as it was saved (if it was), with the optimizer's state and the random generator's
        state restored: predictions are bit-identical and training continues exactly.

    Notes
    -----
    An initializer that cannot be rebuilt — a plain function (saved as ``{"class_name": "function"}``)
    or an unknown class, unless ``custom_objects`` names it — is replaced by ``"zeros"``. This changes
    nothing about the loaded network, whose weights come from the file, but the layer's config then
    shows ``Zeros``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ModelFileError
        When the file is not an intact model file of this or an older format, names a layer type that
        is neither registered nor in ``custom_objects``, or holds arrays that do not fit the rebuilt
        layers. The message says which.
    """
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise ValueError(f"custom_objects must be a dict of name -> object, got {custom_objects!r}")
    where = validation.file_path(path, "path", "load_model")

    def bad(message):
        return ModelFileError(f"{where}: {message}")

    built = {}

    def check(contents):
        """On the declared shapes, before any array is read: build, compare, give each array its place."""
        if contents.kind != "model":
            raise bad("the file holds weights only (written by save_weights): build the network and "
                      "call net.load_weights(path)")
        config = _checked_model_config(contents.model_config, bad)
        try:
            config = _with_rebuildable_initializers(config, custom_objects)
        except (TypeError, ValueError, RecursionError) as error:
            raise bad(f"model_config: cannot rebuild an initializer ({error})") from error
        built["rng_state"] = decode_rng_state(contents.rng_state, bad)
        # No initial weights are drawn: the layers get zero-memory placeholders of the right shapes,
        # so a config declaring a huge layer is refused below, by its shapes, having cost nothing.
        with initializers.deferred_drawing():
            net = _build_network(config, custom_objects, bad)
        built["net"] = net
        built["own_states"] = _seeded_layer_states(net, contents.rng_state, bad)
        built["slots"] = _exact_weight_pairs(net, contents.weights, bad)
        if contents.optimizer_state is not None:
            _check_optimizer_state(net, contents.optimizer_state, bad)
        for layer, key, declared in built["slots"]:
            declared.into = np.empty(declared.shape, dtype=declared.dtype)

    contents = _read_ours_or_keras(path, check)
    if contents is None:
        return keras_format.load_keras_model(path)
    net = built["net"]
    # The file's arrays (read straight into their own new arrays) replace the placeholders.
    for layer, key, _ in built["slots"]:
        layer.params[key] = contents.weights[layer.name][key]
    if contents.training_config is not None:
        _compile(net, contents.training_config, custom_objects, bad)
        _restore_optimizer_state(net, contents.optimizer_state, bad)
    net.rng.bit_generator.state = built["rng_state"]
    for layer, state in built["own_states"]:
        layer.random.bit_generator.state = state
    return net


def _seeded_layer_states(net, data, bad):
    """``[(layer, PCG64 state)]`` for the seeded layers of ``net`` whose state the file holds
    (files written before layers had seeds hold none: those layers start from their seed)."""
    saved = data.get("layers", {})
    if not isinstance(saved, dict):
        raise bad(f"rng_state.layers should map layer paths to generator states, found {str(saved)[:80]}")
    layers = dict(seeded_layers(net.layers))
    unknown = sorted(set(saved) - set(layers))
    if unknown:
        raise bad(f"rng_state.layers names {unknown}, which are not seeded layers of the model")
    return [(layers[path], decode_rng_state(state, bad) if isinstance(state, dict) else
             decode_rng_state({}, bad)) for path, state in saved.items()]


def _read_ours_or_keras(path, check=None):
    """Our file's contents, or None when ``path`` holds a Keras file (recognised by content).

    Our own files are opened once, as before; only a file our reader refuses is looked at again.
    ``check`` is :func:`~.hdf5_format.read_file`'s: it sees the declared shapes before any data.
    """
    if keras_format.sniff(path) == "zip":
        return None
    try:
        return read_file(path, check)
    except ModelFileError:
        if keras_format.is_keras_file(path):
            return None
        raise


def _checked_model_config(config, bad):
    """``config`` (a dict from JSON) if it has the shape of ``Net.get_config()``'s output."""
    layers = config.get("layers")
    if not isinstance(layers, list) or not layers:
        raise bad(f"the architecture (model_config) has no list of layers, found {type(layers).__name__}")
    for index, entry in enumerate(layers):
        if not (isinstance(entry, dict) and isinstance(entry.get("class_name"), str)
                and isinstance(entry.get("config"), dict)):
            raise bad(f"model_config: layer entry {index} should be "
                      f"{{'class_name': str, 'config': {{...}}}}, found {str(entry)[:80]}")
    checks = {
        "name": lambda v: v is None or isinstance(v, str),
        "seed": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
        "dtype": lambda v: isinstance(v, str),
        "trainable": lambda v: isinstance(v, bool),
        "input_shape": lambda v: v is None or (isinstance(v, list) and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in v)),
    }
    for key, check in checks.items():
        if key in config and not check(config[key]):
            raise bad(f"model_config: {key!r} has an invalid value {config[key]!r}")
    return config


def _with_rebuildable_initializers(value, custom_objects):
    """A copy of a config in which every ``*_initializer`` entry can be rebuilt (see load_model)."""
    if isinstance(value, dict):
        return {key: (_rebuildable_initializer(item, custom_objects) if key.endswith("_initializer")
                      else _with_rebuildable_initializers(item, custom_objects))
                for key, item in value.items()}
    if isinstance(value, list):
        return [_with_rebuildable_initializers(item, custom_objects) for item in value]
    return value


def _rebuildable_initializer(spec, custom_objects):
    if not isinstance(spec, dict):
        return spec  # a name such as "he_normal": the layer checks it
    class_name = spec.get("class_name")
    options = spec.get("config") if isinstance(spec.get("config"), dict) else {}
    lookup = options.get("name") if class_name == "function" else class_name
    found = (custom_objects or {}).get(lookup) if isinstance(lookup, str) else None
    if isinstance(found, type) and issubclass(found, initializers.Initializer):
        return found.from_config(dict(options))
    if callable(found):
        return found
    try:
        initializers.deserialize(spec)
        return spec
    except (ValueError, TypeError):
        # Not rebuildable; harmless, since the file's weights overwrite whatever it would draw.
        return "zeros"


def _build_network(config, custom_objects, bad):
    from ..net import Net  # here, not at the top: net -> training -> callbacks -> saving

    for index, entry in enumerate(config["layers"]):
        label = f"layer {index} ({entry['config'].get('name')!r})"
        try:
            layer_class = get_layer_class(entry["class_name"], custom_objects)
        except ValueError as error:
            raise bad(f"{label}: {error}")
        if not (isinstance(layer_class, type) and issubclass(layer_class, Layer)):
            raise bad(f"{label}: custom_objects[{entry['class_name']!r}] is {layer_class!r}, "
                      "not a Layer class")
    try:
        return Net.from_config(config, custom_objects)
    except MemoryError:
        raise
    except Exception as error:  # a layer refusing its saved config: ValueError, TypeError, ...
        raise bad(f"cannot rebuild the network from its saved architecture: "
                  f"{type(error).__name__}: {error}") from error


def _exact_weight_pairs(net, stored, bad):
    """``[(layer, key, file array)]``; every name, shape and dtype must match the rebuilt network.

    The file's arrays may still be :class:`~.hdf5_format.DeclaredArray` headers (shape and dtype only).
    """
    names = [layer.name for layer in net.layers]
    if list(stored) != names:
        raise bad(f"the weights are stored for layers {list(stored)}, but the architecture has {names}")
    pairs = []
    for layer in net.layers:
        arrays, keys = stored[layer.name], list(layer.params)
        if set(arrays) != set(keys):
            raise bad(f"layer {layer.name!r}: the file holds weights {list(arrays)}, the layer has {keys}")
        for key in keys:
            target, source = layer.params[key], arrays[key]
            if source.shape != target.shape or source.dtype != target.dtype:
                raise bad(f"layer {layer.name!r}: weight {key!r} has shape {source.shape} and dtype "
                          f"{source.dtype} in the file, but the layer expects shape {target.shape} and "
                          f"dtype {target.dtype}")
            pairs.append((layer, key, source))
    return pairs


def _compile_per_output(net, training_config, custom_objects, bad):
    """Compile a Model from :func:`_training_config`'s per-output form."""
    names = getattr(net, "output_names", None)
    specs, weights, metric_lists = (training_config.get(key) for key in
                                    ("loss", "loss_weights", "output_metrics"))
    if names is None or not all(isinstance(v, list) and len(v) == len(names)
                                for v in (specs, weights, metric_lists)):
        raise bad("training_config: per-output 'loss', 'loss_weights' and 'output_metrics' should be "
                  f"lists with one entry per output of the model ({names})")
    optimizer = _from_spec(training_config.get("optimizer"), custom_objects, optimizers.get,
                           optimizers.Optimizer, "optimizer", bad)
    chosen = [_from_spec(spec, custom_objects, losses.get, losses.Loss, "loss", bad) for spec in specs]
    try:
        per_output = [[metrics_module.get(entry) for entry in entries] for entries in metric_lists]
        net.compile(optimizer=optimizer, loss=chosen, loss_weights=weights, metrics=per_output)
    except (ValueError, TypeError) as error:
        raise bad(f"training_config: cannot compile the model: {error}") from error


def _compile(net, training_config, custom_objects, bad):
    if "output_metrics" in training_config:
        _compile_per_output(net, training_config, custom_objects, bad)
        return
    metric_entries = training_config.get("metrics", [])
    if not isinstance(metric_entries, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in metric_entries
    ):
        raise bad(f"training_config: 'metrics' should be a list of {{'name': ..., 'metric': ...}}, "
                  f"found {str(metric_entries)[:80]}")
    optimizer = _from_spec(training_config.get("optimizer"), custom_objects, optimizers.get,
                           optimizers.Optimizer, "optimizer", bad)
    loss = _from_spec(training_config.get("loss"), custom_objects, losses.get, losses.Loss, "loss", bad)
    named_metrics = []
    for entry in metric_entries:
        try:
            named_metrics.append((entry["name"], metrics_module.get(entry.get("metric"))))
        except ValueError as error:
            raise bad(f"training_config: metric {entry['name']!r}: {error}")
    net.compile(optimizer=optimizer, loss=loss, metrics=[metric for _, metric in named_metrics])
    net.metrics = named_metrics  # the names as logged when saved ("acc" stays "acc")


def _from_spec(spec, custom_objects, get, base, what, bad):
    """An optimizer or loss from ``{"class_name": ..., "config": {...}}``, custom classes first."""
    if not (isinstance(spec, dict) and isinstance(spec.get("class_name"), str)
            and isinstance(spec.get("config", {}), dict)):
        raise bad(f"training_config: the {what} should be {{'class_name': str, 'config': {{...}}}}, "
                  f"found {str(spec)[:80]}")
    name = spec["class_name"]
    custom = (custom_objects or {}).get(name)
    if custom is not None and not (isinstance(custom, type) and issubclass(custom, base)):
        raise bad(f"custom_objects[{name!r}] is {custom!r}, not a {base.__name__} subclass")
    try:
        if custom is not None:
            return custom.from_config(dict(spec.get("config") or {}))
        return get(spec)
    except Exception as error:
        hint = "" if custom is not None else f"; for your own class pass custom_objects={{{name!r}: ...}}"
        raise bad(f"cannot rebuild the {what} {name!r}: {error}{hint}") from error


def _restore_optimizer_state(net, state, bad):
    _check_optimizer_state(net, state, bad)
    try:
        net.optimizer.set_state(state)
    except ValueError as error:
        raise bad(f"optimizer state: {error}")


def _check_optimizer_state(net, state, bad):
    """Every state array (or its declared header) belongs to a weight of that shape and dtype."""
    params = {f"{layer.name}/{key}": value for layer in net.layers for key, value in layer.params.items()}
    for name, array in state.items():
        if name == "iterations":
            continue
        key = name.partition("/")[2]
        target = params.get(key)
        if target is None:
            raise bad(f"optimizer state {name!r} belongs to no weight of the network")
        if array.shape != target.shape or array.dtype != target.dtype:
            raise bad(f"optimizer state {name!r} has shape {array.shape} and dtype {array.dtype}, but the "
                      f"weight {key!r} has shape {target.shape} and dtype {target.dtype}")


_DECIMAL = re.compile(r"[0-9]{1,40}")


def decode_rng_state(data, bad):
    """The ``bit_generator.state`` dict for PCG64 from :func:`encode_rng_state`'s data, checked."""

    def number(value, what, bits):
        if isinstance(value, str) and _DECIMAL.fullmatch(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < 2**bits:
            raise bad(f"rng_state: {what} should be an integer in [0, 2**{bits}) (a decimal string), "
                      f"found {value!r}")
        return int(value)

    inner = data.get("state")
    if data.get("bit_generator") != "PCG64" or not isinstance(inner, dict):
        raise bad(f"rng_state: expected a PCG64 state {{'bit_generator': 'PCG64', 'state': {{...}}, ...}}, "
                  f"found {str(data)[:80]}")
    state = {
        "bit_generator": "PCG64",
        "state": {"state": number(inner.get("state"), "state.state", 128),
                  "inc": number(inner.get("inc"), "state.inc", 128)},
        "has_uint32": number(data.get("has_uint32"), "has_uint32", 1),
        "uinteger": number(data.get("uinteger"), "uinteger", 32),
    }
    try:
        np.random.Generator(np.random.PCG64()).bit_generator.state = state
    except (ValueError, TypeError) as error:
        raise bad(f"rng_state: numpy refuses it ({error})")
    return state


# ------------------------------------------------------------------------------------------------
# Weights only
# ------------------------------------------------------------------------------------------------


def load_weights(net, path):
    """Copy the arrays saved at ``path`` (by ``save_weights`` or ``save``) into ``net``'s layers.

    Layers are matched by name; when the names differ (layers renamed, or the network built in another
    session with other automatic names) they are matched in order instead. Either way every count and
    shape must agree: otherwise ``ValueError`` names the layer and both shapes, and nothing has been
    changed. Arrays are copied into the existing ones in place (``np.copyto``), so optimizer state
    keyed by ``"layer/weight"`` stays attached. Floating dtypes are converted (float64 -> float32).
    """
    path = validation.file_path(path, "path", "load_weights")
    # The shapes are compared with the network's from the file's headers, before anything is read.
    contents = _read_ours_or_keras(path, lambda declared: _matched_weight_pairs(net, declared.weights))
    if contents is None:
        keras_format.load_keras_weights(net, path)
        return
    for target, source in _matched_weight_pairs(net, contents.weights):
        np.copyto(target, source, casting="same_kind")


def _matched_weight_pairs(net, stored):
    file_layers = [(name, arrays) for name, arrays in stored.items() if arrays]
    net_layers = [layer for layer in net.layers if len(layer.params)]
    by_name = {name for name, _ in file_layers} == {layer.name for layer in net_layers}
    if by_name:
        pairs = [(layer, layer.name, stored[layer.name]) for layer in net_layers]
    elif len(file_layers) != len(net_layers):
        raise ValueError(
            f"load_weights: the file has {len(file_layers)} layers with weights "
            f"{[name for name, _ in file_layers]}, but the network has {len(net_layers)} "
            f"{[layer.name for layer in net_layers]}"
        )
    else:
        pairs = [(layer, name, arrays) for layer, (name, arrays) in zip(net_layers, file_layers)]
    plan = []
    for layer, file_name, arrays in pairs:
        where = f"layer {layer.name!r}"
        if file_name != layer.name:
            where += f" (file layer {file_name!r})"
        keys = list(layer.params)
        if set(arrays) == set(keys):
            matched = [(key, key) for key in keys]
        elif len(arrays) == len(keys):
            matched = list(zip(keys, arrays))
        else:
            raise ValueError(f"load_weights: {where}: the file holds {len(arrays)} arrays "
                             f"{list(arrays)}, the layer has {len(keys)} {keys}")
        for key, file_key in matched:
            target, source = layer.params[key], arrays[file_key]
            if source.shape != target.shape:
                raise ValueError(f"load_weights: {where}: {key!r} has shape {source.shape} in the file, "
                                 f"but {target.shape} in the network")
            plan.append((target, source))
    return plan


def file_info(path):
    """What a file says about itself, checked like a load: kind, versions, epoch, checkpoint record.

    Returns a dict with ``kind`` ("model" or "weights"), ``format_version``, ``library_version``,
    ``epoch`` (epochs trained, or None), ``checkpoint`` (ModelCheckpoint's record, or None),
    ``layer_names`` and ``compiled``.
    """
    contents = read_file(validation.file_path(path, "path", "file_info"))
    return {
        "kind": contents.kind,
        "format_version": contents.format_version,
        "library_version": contents.library_version,
        "epoch": contents.epoch,
        "checkpoint": contents.checkpoint,
        "layer_names": list(contents.weights),
        "compiled": contents.training_config is not None,
    }
