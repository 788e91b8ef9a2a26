"""Keras layer configs <-> modularcnn layers: the one table both directions of the Keras bridge use.

Reading (:func:`layers_from_keras`) turns the ``{"class_name", "config"}`` entries of a Keras model
(both dialects: Keras 2 / tf.keras and Keras 3) into modularcnn layers; writing (:func:`keras_layers_of`)
turns a network's layers into Keras 3 entries. Nothing is imported, evaluated or unpickled: a config is
plain JSON data matched against the table below.

Every option of a Keras layer is either *translated*, *irrelevant to the numbers* (names, dtypes,
initialisers: the weights come from the file), or *refused*: an option we do not implement with a value
other than Keras's default raises :class:`~modularcnn.errors.ModelFileError` naming the layer and the
option, so a model is never silently run differently from Keras. Regularisers and constraints (Keras 3's
``{"module": "keras.regularizers", ...}`` and Keras 2's ``{"class_name": "L2", ...}``) are read into the
layers that take them and written back in Keras 3's form; ones we cannot read (custom objects) do not
change predictions and are dropped with a warning.

Keras's weights and ours share layouts (``kernel`` ``(kh, kw, C, F)``, Dense ``(in, out)``, transposed
kernels ``(kh, kw, F, C)``, batch norm ``gamma, beta, moving_mean, moving_variance``), so arrays are
copied as they are.
"""

import inspect
import warnings

from .. import constraints, regularizers
from ..errors import ModelFileError
from ..layers.base import ActivatedLayer, registered_layers, snake_case

#: Config keys that never change what a layer computes from its weights.
_IRRELEVANT = {"name", "trainable", "dtype", "seed", "autocast", "build_config", "input_dim",
               "input_length", "sparse", "ragged", "optional", "input_shape", "batch_input_shape",
               "batch_shape", "batch_size", "dtype_policy", "quantization_config"}
#: Keys whose value is dropped (with a warning) when the modularcnn layer does not take them.
_TRAINING_ONLY = ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                  "bias_constraint", "beta_regularizer", "gamma_regularizer", "beta_constraint",
                  "gamma_constraint", "depthwise_regularizer", "pointwise_regularizer",
                  "depthwise_constraint", "pointwise_constraint", "alpha_regularizer",
                  "alpha_constraint")

#: Keras activation names -> ``(modularcnn's name, the options Keras's function uses by default)``.
#: Keras 3 and Keras 2 agree on all of them except ``hard_sigmoid`` (see :func:`_activation`).
_ACTIVATIONS = {"linear": ("linear", {}), "relu": ("relu", {}), "relu6": ("relu6", {}),
                "sigmoid": ("sigmoid", {}), "tanh": ("tanh", {}), "softmax": ("softmax", {}),
                "elu": ("elu", {"alpha": 1.0}), "leaky_relu": ("leakyrelu", {"alpha": 0.2}),
                "selu": ("selu", {}), "gelu": ("gelu", {}), "silu": ("silu", {}),
                "swish": ("silu", {}), "softplus": ("softplus", {}), "softsign": ("softsign", {}),
                "exponential": ("exponential", {}), "hard_sigmoid": ("hard_sigmoid", {}),
                "hard_silu": ("hard_silu", {}), "hard_swish": ("hard_silu", {})}


class KerasConfig:
    """One Keras layer's config, consumed key by key; :meth:`finish` refuses what nobody consumed."""

    def __init__(self, class_name, config, where, keras2=False):
        self.class_name, self.where, self.keras2 = class_name, where, keras2
        self.config = dict(config)
        self.used = set(_IRRELEVANT)

    def error(self, message):
        return ModelFileError(f"{self.where}: Keras layer {self.class_name} "
                              f"{self.config.get('name', '')!r}: {message}")

    def take(self, key, default=None):
        self.used.add(key)
        return self.config.get(key, default)

    def require(self, key, allowed, ours=None):
        """The value of ``key``, refused unless it is one of ``allowed`` (Keras's defaults we match)."""
        value = self.take(key)
        normalised = _plain(value)
        if normalised is None and None not in allowed:
            return allowed[0]
        if normalised not in [_plain(a) for a in allowed]:
            raise self.error(f"{key}={value!r} is not supported{ours or ''}; supported: "
                             f"{', '.join(repr(a) for a in allowed)}")
        return normalised

    def finish(self):
        """Refuse options nobody consumed; drop initialisers (the weights come from the file) and,
        with a warning, regularisers and constraints (they do not change predictions)."""
        for key, value in self.config.items():
            if key in self.used or key.endswith("_initializer"):
                continue
            if key in _TRAINING_ONLY:
                if value is not None:
                    warnings.warn(f"{self.where}: {self.class_name} {self.config.get('name')!r}: "
                                  f"{key} is dropped (it does not change predictions)", stacklevel=4)
                continue
            raise self.error(f"option {key}={value!r} is not supported")


def _keyword_arguments(layer_class):
    try:
        return set(inspect.signature(layer_class.__init__).parameters)
    except (TypeError, ValueError):
        return set()


def _plain(value):
    """Lists as tuples (recursively), so JSON values compare with Python defaults."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def _activation(cfg, key="activation"):
    """Keras's activation (a name, or Keras 3's serialised function) as ``(name, options)``."""
    value = cfg.take(key, "linear")
    if isinstance(value, dict):  # Keras 3 may serialise built-in functions as objects
        if value.get("module") not in ("keras.activations", "keras.src.activations", None):
            raise cfg.error(f"custom activation {value!r} is not supported")
        value = value.get("config", value.get("class_name"))
    if value is None:
        value = "linear"
    if not isinstance(value, str) or value.lower() not in _ACTIVATIONS:
        raise cfg.error(f"activation {value!r} is not supported; supported: {', '.join(_ACTIVATIONS)}")
    if cfg.keras2 and value.lower() == "hard_sigmoid":
        # Keras 2's is clip(0.2 x + 0.5, 0, 1); Keras 3's (and ours) is relu6(x + 3) / 6.
        raise cfg.error("activation 'hard_sigmoid' of Keras 2 (clip(0.2 x + 0.5, 0, 1)) is not "
                        "supported; modularcnn's is Keras 3's relu6(x + 3) / 6")
    return _ACTIVATIONS[value.lower()]


def _activation_kwargs(cfg):
    name, options = _activation(cfg)
    if not options:
        return {"activation": name}
    if set(options) == {"alpha"}:
        return {"activation": name, "alpha": options["alpha"]}
    return {"activation": {"name": name, **options}}


# ------------------------------------------------------------------------------------------------
# Reading: one function per family of Keras layers, each returning ``(our class name, kwargs)``
# ------------------------------------------------------------------------------------------------

def _ones(rank):
    return (1,) * rank


def _listed(value):
    """A JSON list (or tuple) as a list, anything else as it is."""
    return list(_plain(value)) if isinstance(value, (list, tuple)) else value


def _read_conv(cfg, rank, transposed=False):
    cfg.require("data_format", ["channels_last", None], " (modularcnn is channels-last)")
    kwargs = {}
    if transposed:
        cfg.require("dilation_rate", [_ones(rank), 1], " for transposed convolutions")
        cfg.require("groups", [1], " for transposed convolutions")
        cfg.require("output_padding", [None])
    else:
        kwargs = {"dilation_rate": _listed(cfg.take("dilation_rate", 1)),
                  "groups": cfg.take("groups", 1)}
    padding = cfg.require("padding", ["valid", "same"])
    return {"filters": cfg.take("filters"), "kernel_size": _listed(cfg.take("kernel_size")),
            "strides": _listed(cfg.take("strides", 1)), "padding": padding,
            "use_bias": bool(cfg.take("use_bias", True)), **kwargs, **_activation_kwargs(cfg)}


def _read_depthwise(cfg, separable):
    cfg.require("data_format", ["channels_last", None], " (modularcnn is channels-last)")
    kwargs = {"kernel_size": _listed(cfg.take("kernel_size")), "strides": _listed(cfg.take("strides", 1)),
              "padding": cfg.require("padding", ["valid", "same"]),
              "depth_multiplier": cfg.take("depth_multiplier", 1),
              "dilation_rate": _listed(cfg.take("dilation_rate", 1)),
              "use_bias": bool(cfg.take("use_bias", True)), **_activation_kwargs(cfg)}
    if separable:
        kwargs["filters"] = cfg.take("filters")
    return kwargs


def _read_pool(cfg, rank):
    cfg.require("data_format", ["channels_last", None], " (modularcnn is channels-last)")
    pool_size = cfg.take("pool_size", 2)
    strides = cfg.take("strides")
    return {"pool_size": list(pool_size) if isinstance(pool_size, (list, tuple)) else pool_size,
            "strides": None if strides is None else
            (list(strides) if isinstance(strides, (list, tuple)) else strides),
            "padding": cfg.require("padding", ["valid", "same"])}


def _read_global_pool(cfg):
    cfg.require("data_format", ["channels_last", None], " (modularcnn is channels-last)")
    return {"keepdims": bool(cfg.take("keepdims", False))}


def _read_dense(cfg):
    cfg.require("lora_rank", [None])
    return {"units": cfg.take("units"), "use_bias": bool(cfg.take("use_bias", True)),
            **_activation_kwargs(cfg)}


def _read_batch_norm(cfg, input_rank):
    axis = _plain(cfg.take("axis", -1))
    if isinstance(axis, tuple) and len(axis) == 1:
        axis = axis[0]  # Keras 2 writes the axis as a list, [3] for images
    if isinstance(axis, tuple):
        raise cfg.error(f"axis={list(axis)!r} is not supported: one feature axis")
    cfg.require("synchronized", [False, None])
    cfg.require("renorm", [False, None])
    cfg.take("renorm_clipping")
    cfg.take("renorm_momentum")
    cfg.take("fused")
    cfg.take("virtual_batch_size")
    cfg.take("adjustment")
    return {"axis": axis, "momentum": cfg.take("momentum", 0.99), "epsilon": cfg.take("epsilon", 1e-3),
            "center": bool(cfg.take("center", True)), "scale": bool(cfg.take("scale", True))}


def _read_layer_norm(cfg):
    cfg.require("rms_scaling", [False, None])
    return {"axis": _listed(cfg.take("axis", -1)), "epsilon": cfg.take("epsilon", 1e-3),
            "center": bool(cfg.take("center", True)), "scale": bool(cfg.take("scale", True))}


def _read_group_norm(cfg):
    return {"groups": cfg.take("groups", 32), "axis": cfg.take("axis", -1),
            "epsilon": cfg.take("epsilon", 1e-3), "center": bool(cfg.take("center", True)),
            "scale": bool(cfg.take("scale", True))}


def _read_border(cfg, key, default):
    cfg.require("data_format", ["channels_last", None], " (modularcnn is channels-last)")
    return {key: _listed(cfg.take(key, default))}


def _read_noise(cfg, key):
    """Dropout-like layers: the rate (or stddev) and the seed; identity in inference."""
    kwargs = {key: cfg.take(key)}
    seed = cfg.take("seed")
    if seed is not None:
        kwargs["seed"] = seed
    return kwargs


def _read_upsampling(cfg, rank):
    cfg.require("data_format", ["channels_last", None], " (modularcnn is channels-last)")
    size = cfg.take("size", 2)
    kwargs = {"size": list(size) if isinstance(size, (list, tuple)) else size}
    if rank == 2:
        kwargs["interpolation"] = cfg.require("interpolation", ["nearest", "bilinear"])
    return kwargs


def _read_activation_layer(cfg):
    return "Activation", _activation_kwargs(cfg)


def _read_leaky_relu(cfg):
    # Keras 3 calls the slope negative_slope (default 0.3), Keras 2 alpha (default 0.3).
    slope = cfg.take("negative_slope", cfg.take("alpha", 0.3))
    return {"negative_slope": float(slope)}


def _read_elu(cfg):
    return {"alpha": float(cfg.take("alpha", 1.0))}


def _read_relu(cfg):
    max_value = cfg.take("max_value")
    return {"max_value": None if max_value is None else float(max_value),
            "negative_slope": float(cfg.take("negative_slope", 0.0) or 0.0),
            "threshold": float(cfg.take("threshold", 0.0) or 0.0)}


def _read_softmax(cfg):
    axis = _plain(cfg.take("axis", -1))
    if isinstance(axis, tuple) and len(axis) == 1:
        axis = axis[0]
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise cfg.error(f"axis={axis!r} is not supported: only one axis (an int)")
    return {"axis": axis}


def _read_prelu(cfg):
    shared = _plain(cfg.take("shared_axes"))
    return {"shared_axes": None if shared is None else list(shared if isinstance(shared, tuple)
                                                            else (shared,))}


def _read_flatten(cfg):
    cfg.require("data_format", ["channels_last", None], " (modularcnn is channels-last)")
    return {}


def _read_dropout(cfg):
    kwargs = _read_noise(cfg, "rate")
    noise_shape = cfg.take("noise_shape")
    if noise_shape is not None:
        kwargs["noise_shape"] = _listed(noise_shape)
    return kwargs


def _read_reshape(cfg):
    return {"target_shape": list(cfg.take("target_shape"))}


_CONV = {f"Conv{r}D": (f"Conv{r}D", lambda c, _, r=r: _read_conv(c, r)) for r in (1, 2, 3)}
_CONV.update({f"Conv{r}DTranspose": (f"Conv{r}DTranspose",
                                     lambda c, _, r=r: _read_conv(c, r, transposed=True))
              for r in (1, 2, 3)})
_CONV["Convolution2D"] = _CONV["Conv2D"]
_POOL = {}
for _r in (1, 2, 3):
    for _kind, _ours in (("MaxPooling", "MaxPooling"), ("AveragePooling", "AveragePooling")):
        _entry = (f"{_ours}{_r}D", lambda c, _, r=_r: _read_pool(c, r))
        _POOL[f"{_kind}{_r}D"] = _entry
        _POOL[f"{'MaxPool' if _kind == 'MaxPooling' else 'AvgPool'}{_r}D"] = _entry

#: Keras class name -> (our class name or None when the reader names it, reader(cfg, input_rank)).
_READERS = {
    **_CONV, **_POOL,
    "Dense": ("Dense", lambda c, _: _read_dense(c)),
    "Flatten": ("Flatten", lambda c, _: _read_flatten(c)),
    "Reshape": ("Reshape", lambda c, _: _read_reshape(c)),
    "Dropout": ("Dropout", lambda c, _: _read_dropout(c)),
    "BatchNormalization": ("BatchNormalization", _read_batch_norm),
    **{f"Global{kind}{r}D": (f"Global{canonical}{r}D", lambda c, _: _read_global_pool(c))
       for r in (1, 2, 3)
       for kind, canonical in (("AveragePooling", "AveragePooling"), ("MaxPooling", "MaxPooling"),
                               ("AvgPool", "AveragePooling"), ("MaxPool", "MaxPooling"))},
    **{f"ZeroPadding{r}D": (f"ZeroPadding{r}D", lambda c, _: _read_border(c, "padding", 1))
       for r in (1, 2, 3)},
    **{f"Cropping{r}D": (f"Cropping{r}D",
                         lambda c, _, r=r: _read_border(c, "cropping", ((0, 0), (0, 0)) if r == 2 else
                                                        ((1, 1),) * r if r == 3 else (1, 1)))
       for r in (1, 2, 3)},
    **{f"SpatialDropout{r}D": (f"SpatialDropout{r}D", lambda c, _: _read_border_free_noise(c))
       for r in (1, 2, 3)},
    "DepthwiseConv1D": ("DepthwiseConv1D", lambda c, _: _read_depthwise(c, False)),
    "DepthwiseConv2D": ("DepthwiseConv2D", lambda c, _: _read_depthwise(c, False)),
    "SeparableConv1D": ("SeparableConv1D", lambda c, _: _read_depthwise(c, True)),
    "SeparableConv2D": ("SeparableConv2D", lambda c, _: _read_depthwise(c, True)),
    "SeparableConvolution2D": ("SeparableConv2D", lambda c, _: _read_depthwise(c, True)),
    "LayerNormalization": ("LayerNormalization", lambda c, _: _read_layer_norm(c)),
    "GroupNormalization": ("GroupNormalization", lambda c, _: _read_group_norm(c)),
    "Permute": ("Permute", lambda c, _: {"dims": _listed(c.take("dims"))}),
    "Rescaling": ("Rescaling", lambda c, _: {"scale": c.take("scale"), "offset": c.take("offset", 0.0)}),
    "GaussianNoise": ("GaussianNoise", lambda c, _: _read_noise(c, "stddev")),
    "GaussianDropout": ("GaussianDropout", lambda c, _: _read_noise(c, "rate")),
    "UpSampling1D": ("UpSampling1D", lambda c, _: _read_upsampling(c, 1)),
    "UpSampling2D": ("UpSampling2D", lambda c, _: _read_upsampling(c, 2)),
    "UpSampling3D": ("UpSampling3D", lambda c, _: _read_upsampling(c, 3)),
    "Activation": (None, lambda c, _: _read_activation_layer(c)),
    "LeakyReLU": ("LeakyReLU", lambda c, _: _read_leaky_relu(c)),
    "ELU": ("ELU", lambda c, _: _read_elu(c)),
    "ReLU": ("ReLU", lambda c, _: _read_relu(c)),
    "Softmax": ("Softmax", lambda c, _: _read_softmax(c)),
    "PReLU": ("PReLU", lambda c, _: _read_prelu(c)),
    **{name: (name, lambda c, _: {}) for name in ("Add", "Subtract", "Multiply", "Average", "Maximum",
                                                  "Minimum")},
    "Concatenate": ("Concatenate", lambda c, _: {"axis": c.take("axis", -1)}),
    "Dot": ("Dot", lambda c, _: {"axes": _listed(c.take("axes")),
                                 "normalize": bool(c.take("normalize", False))}),
}


def _read_border_free_noise(cfg):
    cfg.require("data_format", ["channels_last", None], " (modularcnn is channels-last)")
    return _read_noise(cfg, "rate")


#: Folded into the layer after them when that is a "valid" convolution (explicit padding), otherwise
#: read as layers of their own.
_FOLDED = {"ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"}


def supported_keras_layers():
    """The Keras layer class names that :func:`layer_from_keras` reads, sorted."""
    return sorted(set(_READERS) | {"InputLayer"} | _FOLDED)


#: Keras 2's wrappers of TensorFlow functions applied to tensors in a functional model.
_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda", "TensorFlowOpLayer")


def unwrap_entry(entry, where, extra=()):
    """``(class_name, config)`` of a serialised Keras object, refusing custom and unknown ones.

    ``extra`` names further classes the caller handles itself (nested models in a functional one).
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
            or not isinstance(entry.get("config"), dict):
        raise ModelFileError(f"{where}: a layer entry must be {{'class_name': str, 'config': dict}}, "
                             f"got {str(entry)[:80]!r}")
    class_name = entry["class_name"]
    module = entry.get("module")
    registered = entry.get("registered_name")
    custom = (module is not None and not str(module).startswith("keras")) or \
        (registered not in (None, class_name) and registered != "function")
    if class_name == "Lambda":
        raise ModelFileError(f"{where}: layer {entry['config'].get('name')!r} is a Lambda layer, whose "
                             "code cannot be loaded safely (it would have to be executed); rebuild it "
                             "from modularcnn layers")
    if class_name in _OP_LAYERS or str(module or "").startswith(("keras.src.ops", "keras.ops")):
        # keras.ops.add(x, y) / tf.add(x, y) on a functional model's tensors: an operation, not a
        # layer (Keras 3 may even give it a layer's class name, "Add", with an ops module).
        raise ModelFileError(f"{where}: {entry['config'].get('name')!r} is an operation applied to "
                             f"tensors ({class_name}, module {module!r}), not a Keras layer; modularcnn "
                             "cannot load it: use the equivalent layer (Add, Concatenate, ...)")
    if custom or (class_name not in _READERS and class_name not in {"InputLayer", *extra} | _FOLDED):
        raise ModelFileError(
            f"{where}: layer {entry['config'].get('name')!r} is of type {class_name!r}"
            f"{' (a custom object, ' + str(registered or module) + ')' if custom else ''}, which "
            f"modularcnn cannot load; supported Keras layers: {', '.join(supported_keras_layers())}")
    return class_name, entry["config"]


def layer_from_keras(class_name, config, input_rank, where, padding=None, keras2=False):
    """A new modularcnn layer for one Keras layer entry (not InputLayer).

    ``input_rank`` is the rank of the per-sample input the layer gets (for ``axis`` arguments);
    ``padding`` replaces a convolution's ``"valid"`` by explicit pads (a ZeroPadding folded into it);
    ``keras2`` says the entry was written by Keras 2, whose few differing meanings are refused.
    """
    cfg = KerasConfig(class_name, config, where, keras2)
    ours, reader = _READERS[class_name]
    result = reader(cfg, input_rank)
    if ours is None:
        ours, kwargs = result
    else:
        kwargs = result
    if padding is not None:
        kwargs["padding"] = padding
    layer_class = registered_layers()[ours]
    kwargs.update(_read_training_options(cfg, layer_class))
    cfg.finish()
    # The weights come from the file: built with zeros, the layers draw nothing at random, and zeros
    # are allocated lazily, so a config declaring a huge layer costs no memory before it is refused.
    kwargs.update({key: "zeros" for key in _keyword_arguments(layer_class)
                   if key.endswith("_initializer")})
    name = config.get("name")
    # A frozen Keras layer stays frozen (it decides how a BatchNormalization trains); anything but
    # a bool is Keras's default.
    if config.get("trainable") is False:
        kwargs["trainable"] = False
    try:
        return layer_class(**kwargs, name=name if isinstance(name, str) and name else None)
    except (TypeError, ValueError) as error:
        raise cfg.error(f"cannot be built as {ours}({kwargs}): {error}") from None


def _takes(layer_class, key):
    """Whether our ``layer_class`` takes the regulariser or constraint argument ``key``."""
    if key == "activity_regularizer":
        return issubclass(layer_class, ActivatedLayer)
    return key.rpartition("_")[0] in getattr(layer_class, "weight_options", {}).values()


def _read_training_options(cfg, layer_class):
    """The regularisers and constraints of a Keras entry that ``layer_class`` takes, as objects; one
    that cannot be read (a custom object) is dropped with a warning (it does not change predictions)."""
    kwargs = {}
    for key in _TRAINING_ONLY:
        value = cfg.config.get(key)
        if value is None or not _takes(layer_class, key):
            continue  # absent, or left to finish(), which warns that it is dropped
        cfg.used.add(key)
        module = regularizers if key.endswith("_regularizer") else constraints
        try:
            kwargs[key] = module.get(value, key)
        except ValueError as error:
            warnings.warn(f"{cfg.where}: {cfg.class_name} {cfg.config.get('name')!r}: {error}; it is "
                          "dropped (it does not change predictions)", stacklevel=4)
    return kwargs


def keras_training_options(layer):
    """``(options of the layer taking the weights, options of the last Keras layer)``: the layer's
    regularisers and constraints as Keras 3 configs. The activity regulariser goes on the last layer,
    whose output it penalises (an activation Keras writes as a layer of its own comes after the
    weights). One Keras cannot load (a custom object) is left out with a warning."""
    weights, last = {}, {}
    found = [(f"{prefix}_{kind}", getattr(layer, f"{prefix}_{kind}", None))
             for prefix in getattr(layer, "weight_options", {}).values()
             for kind in ("regularizer", "constraint")]
    found.append(("activity_regularizer", getattr(layer, "activity_regularizer", None)))
    for key, value in found:
        if value is None:
            continue
        kind = "regularizers" if key.endswith("_regularizer") else "constraints"
        builtin = type(value) in (regularizers.L1, regularizers.L2, regularizers.L1L2) or \
            type(value) in (constraints.MaxNorm, constraints.NonNeg, constraints.UnitNorm,
                            constraints.MinMaxNorm)
        if not builtin:
            warnings.warn(f"{layer.describe()}: {key}={value!r} has no Keras equivalent and is left out "
                          "of the Keras file (it does not change predictions)", stacklevel=4)
            continue
        entry = {"module": f"keras.{kind}", "class_name": type(value).__name__,
                 "config": value.get_config(), "registered_name": None}
        (last if key == "activity_regularizer" else weights)[key] = entry
    return weights, last


def input_shape_of(class_name, config):
    """The per-sample input shape a Keras 2/3 entry declares (InputLayer or a first layer), or None."""
    for key in ("batch_shape", "batch_input_shape"):
        shape = config.get(key)
        if isinstance(shape, (list, tuple)) and len(shape) >= 2:
            return tuple(shape[1:])
    shape = config.get("input_shape")
    if class_name == "InputLayer" and isinstance(shape, (list, tuple)):
        return tuple(shape)
    return None


# ------------------------------------------------------------------------------------------------
# Writing: our layer -> Keras 3 entries (one layer may need a few)
# ------------------------------------------------------------------------------------------------

def _policy(dtype):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype.name},
            "registered_name": None}


def _entry(class_name, name, config, layer, input_shape=None):
    entry = {"module": "keras.layers", "class_name": class_name,
             "config": {"name": name, "trainable": layer.trainable, "dtype": _policy(layer.dtype),
                        **config},
             "registered_name": None}
    if class_name.startswith("SpatialDropout"):
        # Keras 3's SpatialDropout layers take no trainable= (their own get_config leaves it out).
        del entry["config"]["trainable"]
    if input_shape is not None:
        entry["build_config"] = {"input_shape": [None, *input_shape]}
    return entry


#: Our activation names that are Keras 3 activation strings of the same meaning (with default options).
_SAME_NAME = {"linear", "relu", "relu6", "sigmoid", "tanh", "selu", "silu", "softplus", "softsign",
              "exponential", "hard_sigmoid", "hard_silu", "gelu", "softmax", "elu"}


def _keras_activation(layer):
    """``(activation string for the layer itself, extra Keras layer after it or None)``.

    An activation with options Keras's string does not carry becomes its own layer (``ReLU``,
    ``LeakyReLU``, ``ELU``, ``Softmax``) after a linear one; one Keras cannot express is refused.
    """
    function = layer.activation
    name = function.name
    options = function.get_config()
    if name == "relu" and options:
        return "linear", ("ReLU", {"max_value": function.max_value,
                                   "negative_slope": function.negative_slope,
                                   "threshold": function.threshold})
    if name == "leakyrelu":
        return "linear", ("LeakyReLU", {"negative_slope": function.alpha})
    if name == "elu" and function.alpha != 1.0:
        return "linear", ("ELU", {"alpha": function.alpha})
    if name == "softmax" and function.axis != -1:
        return "linear", ("Softmax", {"axis": function.axis})
    if name in _SAME_NAME and not (options and name != "elu"):
        return name, None
    if name == "gelu":
        raise ValueError(f"{layer.describe()}: gelu(approximate=True) has no Keras activation string; "
                         "use the exact gelu to save as .keras")
    raise ValueError(f"{layer.describe()}: activation {name!r} has no Keras equivalent; supported: "
                     f"{', '.join(sorted(_SAME_NAME | {'leakyrelu'}))}")


def check_plain_convolution(layer, where):
    """Refuse a convolution option ``where`` (a writer) cannot express: a non-zero ``pad_value``."""
    if getattr(layer, "pad_value", 0) and any(b or a for b, a in layer.pads):
        raise ValueError(f"{where}: {layer.describe()}: pad_value={layer.pad_value} (padding with a "
                         "value other than zero) has no equivalent there")


def _symmetric_padding(layer):
    """Keras ``padding`` for our conv/pool pads, or ``("valid", explicit pads)`` needing a ZeroPadding."""
    if isinstance(layer.pad, str):
        return layer.pad, None
    return "valid", layer.pads


def keras_layers_of(layer):
    """The Keras 3 layers computing what ``layer`` does: ``[(class_name, config, takes_weights)]``.

    Usually one; a convolution with explicit padding becomes ``ZeroPadding`` + a ``"valid"``
    convolution, and a leaky-ReLU activation its own ``LeakyReLU`` layer. Exactly one item takes the
    layer's weights. Raises ``ValueError`` for a layer (or option) with no Keras equivalent.
    """
    kind = type(layer).__name__
    rank = getattr(layer, "rank", None)
    items = []
    if kind in ("Convolutional", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose",
                "Conv2DTranspose", "Conv3DTranspose"):
        transposed = "Transpose" in kind
        check_plain_convolution(layer, "a Keras file")
        padding, explicit = _symmetric_padding(layer)
        if explicit is not None:
            if transposed:
                raise ValueError(f"{layer.describe()}: explicit padding of a transposed convolution "
                                 "has no Keras equivalent; use 'valid' or 'same'")
            items.append((f"ZeroPadding{rank}D", {"padding": [list(p) for p in explicit],
                                                  "data_format": "channels_last"}, False))
        activation, after = _keras_activation(layer)
        config = {"filters": layer.filters, "kernel_size": list(layer.filter_size),
                  "strides": list(layer.stride), "padding": padding,
                  "data_format": "channels_last", "dilation_rate": list(layer.dilation_rate),
                  "activation": activation, "use_bias": layer.use_bias}
        if transposed:
            config["output_padding"] = None
        else:
            config["groups"] = layer.groups
        items.append((f"Conv{rank}D{'Transpose' if transposed else ''}", config, True))
        if after:
            items.append((*after, False))
    elif kind == "Dense":
        activation, after = _keras_activation(layer)
        items.append(("Dense", {"units": layer.units, "activation": activation,
                                "use_bias": layer.use_bias}, True))
        if after:
            items.append((*after, False))
    elif kind in _DEPTHWISE:
        padding, explicit = _depthwise_padding(layer)
        if explicit is not None:
            items.append((f"ZeroPadding{rank}D", {"padding": [list(p) for p in explicit],
                                                  "data_format": "channels_last"}, False))
        activation, after = _keras_activation(layer)
        config = {"kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
                  "padding": padding, "depth_multiplier": layer.depth_multiplier,
                  "data_format": "channels_last", "dilation_rate": list(layer.dilation_rate),
                  "activation": activation, "use_bias": layer.use_bias}
        if kind.startswith("Separable"):
            config["filters"] = layer.filters
        items.append((kind, config, True))
        if after:
            items.append((*after, False))
    elif kind in _POOLS:
        if not isinstance(layer.pad, str):
            raise ValueError(f"{layer.describe()}: explicit pooling padding has no Keras equivalent; "
                             "use 'valid' or 'same'")
        family = "MaxPooling" if kind.startswith("Max") else "AveragePooling"
        items.append((f"{family}{rank}D", {"pool_size": list(layer.pool_size),
                                           "strides": list(layer.stride), "padding": layer.pad,
                                           "data_format": "channels_last"}, True))
    elif kind in _GLOBAL_POOLS:
        family = "GlobalMaxPooling" if kind.startswith("GlobalMax") else "GlobalAveragePooling"
        items.append((f"{family}{layer.rank}D", {"data_format": "channels_last",
                                                 "keepdims": layer.keepdims}, True))
    elif kind == "Flatten":
        items.append(("Flatten", {"data_format": "channels_last"}, True))
    elif kind == "Reshape":
        items.append(("Reshape", {"target_shape": list(layer.target_shape)}, True))
    elif kind == "Dropout":
        items.append(("Dropout", {"rate": layer.rate, "noise_shape": None if layer.noise_shape is None
                                  else list(layer.noise_shape), "seed": layer.seed}, True))
    elif kind.startswith("SpatialDropout"):
        items.append((kind, {"rate": layer.rate, "seed": layer.seed, "data_format": "channels_last"},
                      True))
    elif kind == "GaussianNoise":
        items.append((kind, {"stddev": layer.stddev, "seed": layer.seed}, True))
    elif kind == "GaussianDropout":
        items.append((kind, {"rate": layer.rate, "seed": layer.seed}, True))
    elif kind in ("ReLU", "LeakyReLU", "ELU", "Softmax"):
        # Keras has the same layer classes with the same arguments (their configs are ours).
        items.append((kind, layer.options(), True))
    elif kind == "Activation":
        activation, after = _keras_activation(layer)
        items.append(after + (True,) if after else ("Activation", {"activation": activation}, True))
    elif kind == "PReLU":
        items.append(("PReLU", {"shared_axes": list(layer.shared_axes) or None}, True))
    elif kind == "BatchNormalization":
        items.append(("BatchNormalization", {"axis": layer.axis, "momentum": layer.momentum,
                                             "epsilon": layer.epsilon, "center": layer.center,
                                             "scale": layer.scale}, True))
    elif kind == "LayerNormalization":
        items.append((kind, {"axis": layer.axis, "epsilon": layer.epsilon, "center": layer.center,
                             "scale": layer.scale, "rms_scaling": False}, True))
    elif kind == "GroupNormalization":
        items.append((kind, {"groups": layer.groups, "axis": layer.axis, "epsilon": layer.epsilon,
                             "center": layer.center, "scale": layer.scale}, True))
    elif kind.startswith("ZeroPadding"):
        items.append((kind, {"padding": [list(p) for p in layer.pairs], "data_format": "channels_last"},
                      True))
    elif kind.startswith("Cropping"):
        items.append((kind, {"cropping": [list(p) for p in layer.pairs], "data_format": "channels_last"},
                      True))
    elif kind == "Permute":
        items.append((kind, {"dims": list(layer.dims)}, True))
    elif kind == "Rescaling":
        config = layer.get_config()
        items.append((kind, {"scale": config["scale"], "offset": config["offset"]}, True))
    elif kind in MERGES:
        config = {}
        if kind == "Concatenate":
            config = {"axis": layer.axis}
        elif kind == "Dot":
            config = {"axes": list(layer.axes) if isinstance(layer.axes, tuple) else layer.axes,
                      "normalize": layer.normalize}
        items.append((kind, config, True))
    elif kind in ("UpSampling1D", "UpSampling2D", "UpSampling3D"):
        config = {"size": list(layer.size) if rank != 1 else layer.size[0]}
        if rank == 2:
            config.update(data_format="channels_last", interpolation=layer.interpolation)
        elif rank == 3:
            config["data_format"] = "channels_last"
        items.append((kind, config, True))
    else:
        raise ValueError(f"{layer.describe()}: {kind} cannot be written to a Keras file; layers that "
                         f"can: {', '.join(sorted(WRITABLE))}")
    weight_options, last_options = keras_training_options(layer)
    items = [(name, {**config, **weight_options} if takes else config, takes)
             for name, config, takes in items]
    if last_options:
        name, config, takes = items[-1]
        items[-1] = (name, {**config, **last_options}, takes)
    return items


def _depthwise_padding(layer):
    if isinstance(layer.padding, str):
        return layer.padding, None
    return "valid", layer.pads


_POOLS = ("MaxPooling", "MaxPooling1D", "MaxPooling2D", "MaxPool2D", "MaxPooling3D", "AveragePooling",
          "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "AvgPool1D", "AvgPool2D",
          "AvgPool3D", "MaxPool1D", "MaxPool3D")
_GLOBAL_POOLS = tuple(f"Global{kind}{r}D" for kind in ("AveragePooling", "MaxPooling", "AvgPool", "MaxPool")
                      for r in (1, 2, 3))
_DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D")
#: Merge layers: Keras has the same classes with the same options.
MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot")

#: Our layer classes :func:`keras_layers_of` translates.
WRITABLE = {"Convolutional", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
            "Conv3DTranspose", "Dense", *_POOLS, *_GLOBAL_POOLS, *_DEPTHWISE, "Flatten", "Reshape",
            "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
            "GaussianDropout", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "PReLU",
            "BatchNormalization", "LayerNormalization", "GroupNormalization", "ZeroPadding1D",
            "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "Permute",
            "Rescaling", "UpSampling1D", "UpSampling2D", "UpSampling3D", *MERGES}


def layer_entries(layer, input_shape, used):
    """``[(entry, arrays, takes_weights)]``: the Keras 3 entries of one layer of ours, in order.

    ``arrays`` are the variables of the entry (Keras's order, that of ``layers/<path>/vars/<k>`` in a
    weights file); ``used`` holds the names taken so far (extra entries get fresh ones, added to it).
    """
    items = []
    for position, (class_name, config, takes_weights) in enumerate(keras_layers_of(layer)):
        if takes_weights:
            name = layer.name
        else:
            name = f"{layer.name}_{snake_case(class_name)}"
            while name in used:
                name += "_"
            used.add(name)
        entry = _entry(class_name, name, config, layer, input_shape=input_shape if position == 0
                       else None)
        items.append((entry, list(layer.params.values()) if takes_weights else [], takes_weights))
    return items


def keras_entries(net):
    """Keras 3 Sequential ``layers`` entries for ``net`` (a Net of plain layers) and, in the same
    order, the arrays of each (see :func:`layer_entries`)."""
    entries, weights = [], []
    used = {layer.name for layer in net.layers}
    shape = net.input_shape
    for layer in net.layers:
        for entry, arrays, _ in layer_entries(layer, shape, used):
            entries.append(entry)
            weights.append(arrays)
        shape = layer.output_shape
    return entries, weights
