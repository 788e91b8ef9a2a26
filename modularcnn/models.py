"""Ready-made networks (the CLI's ``--model`` presets) and networks read from JSON architecture files.

Every preset takes the per-sample ``input_shape`` (H, W, C) and ``num_classes`` and returns an
uncompiled :class:`~modularcnn.Net` ending in a softmax, so any image dataset fits::

    from modularcnn import models
    net = models.lenet5(input_shape=(28, 28, 1), num_classes=10, seed=0)

- ``lenet`` (:func:`lenet5`, 61,706 parameters on MNIST): LeCun et al. 1998 with ReLU and max
  pooling: conv 6@5x5 (same), pool, conv 16@5x5, pool, dense 120, 84, softmax.
- ``simple`` (804,554): conv 32@3x3, pool, dense 128, softmax.
- ``deep`` (467,818): two VGG blocks (two 3x3 convolutions, then pooling; 32 and 64 filters),
  dense 128 with dropout 0.5.
- ``best`` (422,538): conv 32@3x3 and conv 64@3x3, each with batch norm and pooling, dense 128
  with batch norm and dropout 0.4; the network of ``scripts/train_mnist.py``.

:func:`from_json` rebuilds a network from the output of :meth:`Net.get_config` saved as JSON.

Keras's ``keras.models`` names are here too: :func:`model_from_json` (the string of
:meth:`Net.to_json`), :func:`clone_model` (the same architecture with fresh weights), ``Sequential``,
``Model`` and ``load_model``.
"""

import json

from . import validation
from .layers import BatchNormalization, Convolutional, Dense, Dropout, Flatten, MaxPooling
from .net import Net, Sequential

PRESETS = ("lenet", "simple", "deep", "best")


def lenet5(input_shape=(28, 28, 1), num_classes=10, seed=None):
    """LeNet-5 with ReLU and max pooling: small and quick, the CLI's default.

    The first convolution pads by 2, so 28x28 MNIST digits see the 32x32 input of the original.
    """
    net = Net(input_shape=input_shape, name="lenet5", seed=seed)
    net.add(Convolutional(6, 5, pad=2, activation="relu"))
    net.add(MaxPooling(2))
    net.add(Convolutional(16, 5, activation="relu"))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(120, activation="relu"))
    net.add(Dense(84, activation="relu"))
    net.add(Dense(num_classes, activation="softmax"))
    return net


def simple(input_shape=(28, 28, 1), num_classes=10, seed=None):
    """One convolution and one hidden dense layer."""
    net = Net(input_shape=input_shape, name="simple", seed=seed)
    net.add(Convolutional(32, 3, pad="same", activation="relu"))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(128, activation="relu"))
    net.add(Dense(num_classes, activation="softmax"))
    return net


def deep(input_shape=(28, 28, 1), num_classes=10, seed=None):
    """Two VGG-style blocks (two 3x3 convolutions, then pooling), a dense layer and dropout."""
    net = Net(input_shape=input_shape, name="deep", seed=seed)
    for filters in (32, 64):
        net.add(Convolutional(filters, 3, pad="same", activation="relu"))
        net.add(Convolutional(filters, 3, pad="same", activation="relu"))
        net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(128, activation="relu"))
    net.add(Dropout(0.5))
    net.add(Dense(num_classes, activation="softmax"))
    return net


def best(input_shape=(28, 28, 1), num_classes=10, seed=None):
    """The MNIST recipe network (``scripts/train_mnist.py``): >= 99.3% with augmentation.

    Two convolution blocks, each followed by batch normalisation (which lets a larger learning
    rate train stably in few epochs) and pooling, then a dense layer with batch norm and dropout.
    Batch norm's moving averages use momentum 0.9 rather than Keras's 0.99: they then settle within
    ~50 steps, so the network also predicts well after short runs on small data.
    """
    net = Net(input_shape=input_shape, name="best", seed=seed)
    net.add(Convolutional(32, 3, pad="same", activation="relu"))
    net.add(BatchNormalization(momentum=0.9))
    net.add(MaxPooling(2))
    net.add(Convolutional(64, 3, pad="same", activation="relu"))
    net.add(BatchNormalization(momentum=0.9))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(128, activation="relu"))
    net.add(BatchNormalization(momentum=0.9))
    net.add(Dropout(0.4))
    net.add(Dense(num_classes, activation="softmax"))
    return net


_BUILDERS = {"lenet": lenet5, "lenet5": lenet5, "simple": simple, "deep": deep, "best": best}


def get(name, input_shape=(28, 28, 1), num_classes=10, seed=None):
    """The preset called ``name`` (``"lenet"``/``"lenet5"``, ``"simple"``, ``"deep"``, ``"best"``)."""
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)} "
                         "or give an architecture file PATH.json")
    input_shape = validation.shape_tuple(input_shape, "input_shape", "models.get")
    num_classes = validation.positive_int(num_classes, "num_classes", "models.get")
    return _BUILDERS[name](input_shape=input_shape, num_classes=num_classes, seed=seed)


def from_json(path, input_shape=None, seed=None, custom_objects=None):
    """Build a network (fresh weights) from a JSON file holding :meth:`Net.get_config`'s output.

    Parameters
    ----------
    path : str or os.PathLike
        The architecture file, e.g. written with ``json.dump(net.get_config(), f)``.
    input_shape : tuple of int, optional
        Used when neither the file's ``input_shape`` nor its first layer gives one, so one
        architecture file can serve datasets of different image sizes.
    seed : int, optional
        Overrides the file's ``seed`` when given.
    custom_objects : dict, optional
        Your own layer classes by name, as for :meth:`Net.from_config`.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not JSON, not a network config, or a layer that cannot be built; the message names the file.
    """
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a valid JSON file ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError(f"{path}: expected a network config (Net.get_config() as JSON) with a "
                         f"'layers' list, got {type(config).__name__}"
                         + (f" with keys {sorted(config)}" if isinstance(config, dict) else ""))
    config = dict(config)
    first = config["layers"][0].get("config", {}) if config["layers"] else {}
    if config.get("input_shape") is None and first.get("input_shape") is None and input_shape:
        config["input_shape"] = list(input_shape)
    if seed is not None:
        config["seed"] = seed
    try:
        return Net.from_config(config, custom_objects=custom_objects)
    except (KeyError, TypeError, AttributeError) as error:
        # Misspelled keys or constructor arguments: say which file they came from.
        raise ValueError(f"{path}: invalid network config ({type(error).__name__}: {error})") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _config_of(document, where):
    """The network config inside a :meth:`Net.to_json` document (or a bare ``get_config()``)."""
    if not isinstance(document, dict):
        raise ValueError(f"{where}: expected a JSON object describing a network, got "
                         f"{type(document).__name__}")
    if isinstance(document.get("config"), dict) and document.get("class_name") in ("Net", "Model",
                                                                                  "Sequential"):
        config = dict(document["config"])
        if document["class_name"] == "Model":
            config.setdefault("class_name", "Model")
        if document.get("module") == "keras" or "keras_version" in document:
            raise ValueError(f"{where}: this is a Keras model's JSON; open Keras files with "
                             "modularcnn.load_model (.keras or .h5) instead")
        return config
    if isinstance(document.get("layers"), list):
        return document
    raise ValueError(f"{where}: expected Net.to_json() output (keys 'class_name' and 'config'), got "
                     f"keys {sorted(document)}")


def model_from_json(json_string, custom_objects=None):
    """A network (fresh weights, not compiled) from :meth:`Net.to_json`'s string, as Keras's
    ``keras.models.model_from_json``; a graph's JSON gives a :class:`~modularcnn.Model`.

    ``ValueError`` for text that is not JSON or not a network; ``custom_objects`` maps your own
    layer class names to classes, as for :meth:`Net.from_config`.
    """
    if not isinstance(json_string, (str, bytes, bytearray)):
        raise ValueError(f"model_from_json takes a JSON string, got {type(json_string).__name__}")
    try:
        document = json.loads(json_string)
    except json.JSONDecodeError as error:
        raise ValueError(f"model_from_json: not valid JSON ({error})") from None
    config = _config_of(document, "model_from_json")
    try:
        return Net.from_config(config, custom_objects=custom_objects)
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"model_from_json: invalid network config ({type(error).__name__}: "
                         f"{error})") from None


def clone_model(model, input_tensors=None, clone_function=None):
    """A new network with ``model``'s architecture and layer names and fresh weights, as Keras's
    ``keras.models.clone_model``: nothing is shared, nothing is compiled.

    The new weights are drawn from the architecture's initialisers: with the network's ``seed``
    they equal ``model``'s initial weights (the same seed gives the same draws), without one they
    are new draws. ``clone_function(layer) -> new layer`` replaces how each layer of a ``Net`` is
    copied (default: ``type(layer).from_config(layer.get_config())``). ``input_tensors`` (Keras's
    way of feeding the clone new inputs) is not supported and refused.
    """
    from .functional import Model as GraphModel  # noqa: PLC0415 - functional imports net

    if not isinstance(model, Net):
        raise ValueError(f"clone_model takes a Net or Model, got {type(model).__name__}")
    if input_tensors is not None:
        raise ValueError("clone_model: input_tensors is not supported; build a Model on new "
                         "Input tensors from the clone's layers instead")
    if clone_function is not None and not callable(clone_function):
        raise ValueError(f"clone_model: clone_function must be callable, got {clone_function!r}")
    if isinstance(model, GraphModel):
        if clone_function is not None:
            raise ValueError("clone_model: clone_function is supported for a Net, not a graph Model")
        return GraphModel.from_config(model.get_config())
    if clone_function is None:
        return Net.from_config(model.get_config())
    config = model.get_config()
    clone = Net(input_shape=config["input_shape"], name=config["name"], seed=config["seed"],
                dtype=config["dtype"])
    for layer in model.layers:
        copy = clone_function(layer)
        if copy is layer:
            raise ValueError(f"clone_model: clone_function returned {layer.describe()} itself; it "
                             "must return a new layer")
        clone.add(copy)
    clone.trainable = model.trainable
    return clone


def load_model(path, custom_objects=None, compile=True):  # noqa: A002 - Keras's argument name
    """:func:`modularcnn.load_model` under Keras's ``keras.models`` name; ``compile=False`` drops
    the stored optimizer, loss and metrics (the network comes back uncompiled), as in Keras."""
    from .saving import load_model as load  # noqa: PLC0415 - saving imports modules importing this

    if not isinstance(compile, bool):
        raise ValueError(f"load_model: compile must be True or False, got {compile!r}")
    net = load(path, custom_objects=custom_objects)
    if not compile:
        net.optimizer, net.loss, net.metrics, net.compiled = None, None, [], False
        net._objective = None
    return net


def __getattr__(name):
    # ``models.Model`` without importing functional (which imports this package's neighbours) early.
    if name == "Model":
        from .functional import Model  # noqa: PLC0415

        return Model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PRESETS", "lenet5", "simple", "deep", "best", "get", "from_json", "model_from_json",
           "clone_model", "load_model", "Sequential", "Model"]
