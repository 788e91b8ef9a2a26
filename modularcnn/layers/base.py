"""The layer protocol that every layer — built-in or written by a user — follows.

Lifecycle, as in Keras:

1. ``__init__`` stores hyperparameters only (no shapes needed, except an optional ``input_shape``).
2. ``build(input_shape)`` learns the per-sample input shape (no batch axis), creates the arrays in
   ``params`` with the initialisers, and sets ``input_shape`` and ``output_shape``.
3. ``forward(x, training=False)`` maps a batch ``(N, *input_shape)`` to ``(N, *output_shape)`` and
   caches what the backward pass needs.
4. ``backward(dy)`` takes ``dL/dy`` and returns ``dL/dx``, filling ``grads`` (same keys as the
   trainable entries of ``params``).

``params`` holds *all* of a layer's state (kernels and biases, but also e.g. batch-norm moving
statistics); the names listed in ``non_trainable_params`` are state the optimiser must not touch.
``get_config()`` returns the constructor's keyword arguments, JSON-serialisable, and
``from_config(config)`` calls the constructor with them, which is what model files store.
"""

import contextlib
import contextvars
import re
import weakref

import numpy as np

from .. import activations, constraints, initializers, regularizers, validation
from ..errors import ArgumentError
from ..kernels.windows import output_spatial_shape, resolve_padding

_REGISTRY = {}


def register_layer(cls=None, *, name=None):
    """Class decorator making a layer loadable by its class name from saved model files.

    Use it on your own layers: ``@register_layer`` above ``class MyLayer(Layer): ...``. Loading looks
    classes up here (or in ``custom_objects``) and nowhere else, so a model file cannot name arbitrary code.
    """

    def decorate(layer_class):
        key = name or layer_class.__name__
        existing = _REGISTRY.get(key)
        if existing is not None and existing is not layer_class and existing.__module__.startswith(
            "modularcnn."
        ) and not layer_class.__module__.startswith("modularcnn."):
            raise ValueError(f"layer name {key!r} is taken by the built-in {existing.__qualname__}")
        _REGISTRY[key] = layer_class
        return layer_class

    return decorate(cls) if cls is not None else decorate


_FROZEN = contextvars.ContextVar("modularcnn_inside_frozen_container", default=False)


@contextlib.contextmanager
def frozen_scope(frozen):
    """While a frozen container (a network or block with ``trainable=False``) runs its layers.

    Keras 3's ``trainable`` setter freezes every sublayer; here a container's flag stays its own,
    and its forward pass runs inside this scope instead, so that what Keras derives from a frozen
    layer (a BatchNormalization in inference mode, see :func:`inside_frozen`) holds for the layers
    of a frozen network too, at any depth. ``frozen=False`` leaves the surrounding scope as it is.
    """
    if not frozen:
        yield
        return
    token = _FROZEN.set(True)
    try:
        yield
    finally:
        _FROZEN.reset(token)


def inside_frozen():
    """True inside :func:`frozen_scope` of a frozen container."""
    return _FROZEN.get()


def all_layers(layers):
    """Every layer of ``layers`` and, below each, its sublayers (residual blocks, nested models),
    depth first."""
    for layer in layers:
        yield layer
        yield from all_layers(layer.sublayers)


def container_of(layer):
    """The network or block (a ``Net``, a ``Residual``) that holds ``layer``, or None."""
    ref = getattr(layer, "_container", None)
    return ref() if ref is not None else None


def check_unclaimed(layers, owner, owner_label):
    """A ValueError when a layer of ``layers`` is already held by a container other than ``owner``.

    A layer keeps caches and parameters built for one place: adding it to a second network would
    rebuild it (new weights, another shape or dtype) under the first one, which then silently computes
    something else. Keras's Sequential shares such a layer; here the error says so instead, and a graph
    ``Model`` is where one layer may be called several times (shared layers are not claimed there).
    """
    for layer in layers:
        holder = container_of(layer)
        if holder is not None and holder is not owner:
            holder_name = getattr(holder, "name", None)
            holder_label = (f"{type(holder).__name__} {holder_name!r}" if holder_name
                            else type(holder).__name__)
            if holder_name and holder_name == getattr(owner, "name", None):
                holder_label = f"another {holder_label}"
            raise ValueError(
                f"{owner_label}: layer {layer.describe()} already belongs to {holder_label}; a layer can "
                "be in one network only (make a new one, e.g. type(layer).from_config(layer.get_config()), "
                "or call the same layer several times in a graph Model to share its weights)"
            )


def claim(layers, owner):
    """Record ``owner`` as the container of ``layers`` (a weak reference: a dropped network frees them)."""
    for layer in layers:
        layer._container = weakref.ref(owner)


def get_layer_class(class_name, custom_objects=None):
    """The registered layer class called ``class_name`` (``custom_objects`` first); ValueError if none."""
    if custom_objects and class_name in custom_objects:
        return custom_objects[class_name]
    if class_name not in _REGISTRY:
        raise ValueError(
            f"unknown layer type {class_name!r}; registered types: {', '.join(sorted(_REGISTRY))} "
            "(register your own with @modularcnn.layers.register_layer or pass custom_objects)"
        )
    return _REGISTRY[class_name]


def registered_layers():
    """A copy of the registry: class name -> class."""
    return dict(_REGISTRY)


def snake_case(name):
    """``"BatchNormalization"`` -> ``"batch_normalization"``; the default prefix of layer names."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=.)(?=[A-Z][a-z])", "_", name).lower()


def pick_alias(layer, ours, ours_value, keras, keras_value, default):
    """Resolve an argument that may be given under our (seed) name or under Keras's name."""
    if ours_value is not None and keras_value is not None and ours_value != keras_value:
        raise ValueError(
            f"{layer}: {ours}={ours_value!r} and {keras}={keras_value!r} disagree; give one of them"
        )
    if ours_value is not None:
        return ours_value
    return keras_value if keras_value is not None else default


class Layer:
    """Base class of all layers: see the module docstring for the protocol.

    Parameters
    ----------
    input_shape : tuple of int, optional
        Per-sample input shape, e.g. ``(28, 28, 1)``; needed only by the first layer of a network.
    name : str, optional
        Unique name within a network; defaults to the snake-cased class name plus a counter.
    trainable : bool
        When false the optimiser leaves this layer's parameters alone.
    """

    #: Entries of ``params`` that are state, not weights (e.g. moving statistics).
    non_trainable_params = ()
    #: False when a sample's output in training depends on the other samples of the batch (batch
    #: normalization). Such a layer can see the batch a slice at a time only when it takes every
    #: whole-batch quantity through ``self.batch_reducer`` and says so with ``syncs_batch_statistics``
    #: (:mod:`modularcnn.layers.batch_statistics`); otherwise ``fit`` keeps it in one process.
    samples_independent = True
    syncs_batch_statistics = False
    #: True for layers called on a list of tensors (merge layers): ``build`` then gets a list of
    #: shapes, ``forward`` a list of arrays, and ``backward`` returns a list of gradients.
    multiple_inputs = False

    def __init__(self, input_shape=None, name=None, trainable=True):
        owner = type(self).__name__
        input_shape = validation.shape_tuple(input_shape, "input_shape", owner, allow_none=True)
        if name is not None and (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name)):
            validation.fail(owner, "name", "letters, digits, '_', '.' or '-'", name)
        self.requested_input_shape = input_shape
        self.input_shape = input_shape
        self.output_shape = None
        self.name = name
        self.trainable = validation.boolean(trainable, "trainable", owner)
        self.params = {}
        self.grads = {}
        self.built = False
        # Set by the network before build(): the shared seeded generator and the compute dtype.
        self.rng = None
        self.dtype = np.dtype(np.float32)
        # The network clears this on its first layer during training: no one needs dL/dx there.
        self.input_grad_needed = True

    # -- lifecycle -------------------------------------------------------------------------------

    def build(self, input_shape):
        """Create parameters for ``input_shape`` (per sample) and record input and output shapes."""
        input_shape = tuple(int(d) for d in input_shape)
        self.output_shape = tuple(self.compute_output_shape(input_shape))
        self.input_shape = input_shape
        self.built = True

    def build_checked(self, input_shape):
        """:meth:`build`, then refuse an output of more than MAX_ARRAY_ELEMENTS values per sample
        (``UpSampling2D(size=10**6)``, ``padding=10**9``): an ArgumentError before a batch of them is
        allocated, not a MemoryError. A refused layer (here or by its own ``build``) is left unbuilt,
        so calling it again gives the same error. How the networks build layers."""
        try:
            self.build(input_shape)
            validation.array_elements(self.output_shape, "one sample's output", self.describe())
        except ValueError:
            self.built, self.params, self.output_shape = False, {}, None
            raise

    def compute_output_shape(self, input_shape):
        """Per-sample output shape for a per-sample input shape; pure arithmetic, no arrays."""
        return tuple(input_shape)

    def forward(self, x, training=False):
        """Map ``x`` (N, *input_shape) to (N, *output_shape), caching what ``backward`` needs."""
        raise NotImplementedError

    def backward(self, dy):
        """Given ``dy = dL/dy`` (N, *output_shape), fill ``grads`` and return ``dL/dx`` (N, *input_shape)."""
        raise NotImplementedError

    def __call__(self, inputs, training=None):
        """``layer(x)``: on symbolic tensors, record a graph node; on arrays, compute (as Keras does).

        Called on :class:`~modularcnn.layers.symbolic.SymbolicTensor` (from ``Input``), the layer is
        built for their shapes and a node is recorded (see :mod:`modularcnn.layers.symbolic`); a
        symbolic tensor comes back. Called on NumPy arrays ``(N, *shape)``, it is built for them if
        needed and runs its forward pass in inference mode (``training=True`` for training mode).
        """
        from .symbolic import call_symbolic, is_symbolic  # noqa: PLC0415 - symbolic imports base

        if is_symbolic(inputs):
            if training is not None:
                raise ValueError(f"{self.describe()}: training= is decided when the model runs "
                                 "(fit trains, predict infers), not when a layer is called on a "
                                 "symbolic tensor")
            return call_symbolic(self, inputs)
        return self._call_eagerly(inputs, bool(training))

    def _call_eagerly(self, inputs, training):
        if isinstance(inputs, (list, tuple)) != self.multiple_inputs:
            what = "a list of arrays" if self.multiple_inputs else "one array"
            raise ValueError(f"{self.describe()} takes {what}, got {type(inputs).__name__}")
        arrays = [np.asarray(x) for x in inputs] if self.multiple_inputs else [np.asarray(inputs)]
        for array in arrays:
            if array.dtype.kind not in "biuf" or array.ndim < 2:
                raise ValueError(f"{self.describe()}: expected a numeric batch (N, ...), got an "
                                 f"array of shape {array.shape} and dtype {array.dtype}")
        if not self.built:
            if any(array.dtype.kind == "f" for array in arrays):
                self.dtype = np.result_type(*[a.dtype for a in arrays if a.dtype.kind == "f"])
            shapes = [tuple(a.shape[1:]) for a in arrays]
            self.build_checked(shapes if self.multiple_inputs else shapes[0])
        arrays = [np.ascontiguousarray(a, dtype=self.dtype) for a in arrays]
        return self.forward(arrays if self.multiple_inputs else arrays[0], training=training)

    # -- parameters ------------------------------------------------------------------------------

    def add_param(self, name, shape, initializer, trainable=True):
        """Create ``params[name]`` with ``initializer(shape, rng, dtype)``; checks what it returns."""
        init = initializers.get(initializer)
        validation.array_elements(shape, f"parameter {name!r}", self.describe())
        if initializers.drawing_deferred():
            # Being rebuilt from a file, whose arrays replace these: a zero-strided placeholder of the
            # right shape and dtype takes no memory, so a config declaring a huge layer costs nothing
            # until its shapes have been compared with what the file holds.
            self.params[name] = np.broadcast_to(np.zeros((), dtype=self.dtype), tuple(shape))
            if not trainable and name not in self.non_trainable_params:
                self.non_trainable_params = tuple(self.non_trainable_params) + (name,)
            return self.params[name]
        try:
            value = np.asarray(init(tuple(shape), self.random, self.dtype))
        except MemoryError:
            raise ArgumentError(
                f"{self.describe()}: not enough memory for parameter {name!r} of shape {tuple(shape)} "
                f"({np.dtype(self.dtype).itemsize * int(np.prod(shape, dtype=np.float64)):,.0f} bytes)"
            ) from None
        if value.shape != tuple(shape):
            raise ValueError(
                f"{self.describe()}: initializer {init!r} returned shape {value.shape} for {name!r}, "
                f"expected {tuple(shape)}"
            )
        self.params[name] = np.ascontiguousarray(value, dtype=self.dtype)
        if not trainable and name not in self.non_trainable_params:
            self.non_trainable_params = tuple(self.non_trainable_params) + (name,)
        return self.params[name]

    @property
    def random(self):
        """The generator for this layer's random draws (the network's, once added to one)."""
        if self.rng is None:
            seed = getattr(self, "seed", None)
            self.rng = initializers.layer_generator() if seed is None else np.random.default_rng(seed)
        return self.rng

    @property
    def owns_generator(self):
        """True for a layer given its own ``seed=`` (Keras's ``Dropout(seed=...)``): it draws from
        its own generator, which the network does not replace and saves apart."""
        return getattr(self, "seed", None) is not None

    def adopt_rng(self, rng):
        """Take the network's generator ``rng``, unless this layer has its own (``seed=``)."""
        if self.owns_generator:
            if self.rng is None:
                self.rng = np.random.default_rng(self.seed)
        else:
            self.rng = rng

    @property
    def trainable_params(self):
        """``params`` entries the optimiser updates: empty when the layer is frozen."""
        if not self.trainable:
            return {}
        return {k: v for k, v in self.params.items() if k not in self.non_trainable_params}

    # -- penalties and constraints on weights ----------------------------------------------------

    #: Parameter name -> the prefix of the arguments naming its regularizer and constraint, as Keras
    #: names them (``{"kernel": "kernel", "bias": "bias"}``: ``kernel_regularizer``,
    #: ``bias_constraint``; a depthwise kernel's are ``depthwise_regularizer``, ...).
    weight_options = {}

    def set_weight_options(self, given):
        """Read ``{"<prefix>_regularizer": ..., "<prefix>_constraint": ...}`` (the constructor's
        arguments; missing ones are None) into attributes of those names, checking each."""
        owner = type(self).__name__
        prefixes = set(self.weight_options.values())
        for option, value in given.items():
            if value is not None and option.rpartition("_")[0] not in prefixes:
                raise ValueError(f"{owner} takes no {option} (it has no such weights); its options: "
                                 + ", ".join(sorted(f"{p}_{k}" for p in prefixes
                                                    for k in ("regularizer", "constraint"))))
        for prefix in self.weight_options.values():
            for kind, module in (("regularizer", regularizers), ("constraint", constraints)):
                option = f"{prefix}_{kind}"
                setattr(self, option, module.get(given.get(option), f"{owner}: {option}"))

    def regularizer_of(self, key):
        """The regularizer of ``params[key]``, or None."""
        prefix = self.weight_options.get(key)
        return getattr(self, f"{prefix}_regularizer", None) if prefix else None

    def constraint_of(self, key):
        """The constraint of ``params[key]``, or None."""
        prefix = self.weight_options.get(key)
        return getattr(self, f"{prefix}_constraint", None) if prefix else None

    def weight_options_config(self):
        """The regularizers and constraints that are set, serialised for :meth:`get_config`."""
        config = {}
        for prefix in self.weight_options.values():
            for kind, module in (("regularizer", regularizers), ("constraint", constraints)):
                value = getattr(self, f"{prefix}_{kind}", None)
                if value is not None:
                    config[f"{prefix}_{kind}"] = module.serialize(value)
        return config

    @property
    def sublayers(self):
        """Layers held inside this one (a residual block's), listed under it by ``summary()``."""
        return ()

    def get_weights(self):
        """Copies of this layer's arrays in Keras's order (``[kernel, bias]``; batch norm's
        ``[gamma, beta, moving_mean, moving_variance]``), with Keras's shapes; ``[]`` before build."""
        return [np.array(value) for value in self.params.values()]

    def set_weights(self, weights):
        """Copy ``weights`` (a list as :meth:`get_weights` returns) into this layer's arrays.

        The count, every shape and the dtypes (numbers that cast to the layer's dtype) are checked
        before anything is written; ``ValueError`` names the layer, the array and both shapes.
        """
        if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)):
            raise ValueError(f"{self.describe()}: set_weights takes a list of arrays, got "
                             f"{type(weights).__name__}")
        targets = list(self.params.items())
        if len(weights) != len(targets):
            names = [key for key, _ in targets]
            raise ValueError(f"{self.describe()}: set_weights expects {len(targets)} arrays {names}"
                             f"{'' if self.built else ' (the layer is not built yet)'}, got "
                             f"{len(weights)}")
        arrays = []
        for (key, value), new in zip(targets, weights):
            new = np.asarray(new)
            if new.dtype.kind not in "biuf":
                raise ValueError(f"{self.describe()}: set_weights: {key} must be numeric, got an "
                                 f"array of dtype {new.dtype}")
            if new.shape != value.shape:
                raise ValueError(f"{self.describe()}: set_weights: {key} has shape {value.shape}, "
                                 f"got {new.shape}")
            arrays.append(new)
        for (_, value), new in zip(targets, arrays):
            # In place: the optimizer's state and the network's views keep pointing at these arrays.
            np.copyto(value, new, casting="unsafe")

    def count_params(self):
        """Number of scalars in ``params`` (trainable and not)."""
        return int(sum(v.size for v in self.params.values()))

    def count_trainable_params(self):
        return int(sum(v.size for v in self.trainable_params.values()))

    # -- config ----------------------------------------------------------------------------------

    def get_config(self):
        """The constructor's keyword arguments, JSON-serialisable."""
        config = {"name": self.name, "trainable": self.trainable}
        if self.requested_input_shape is not None:
            config["input_shape"] = list(self.requested_input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuild an (unbuilt) layer from :meth:`get_config`'s output."""
        return cls(**config)

    # -- helpers ---------------------------------------------------------------------------------

    def describe(self):
        """``"conv2d_1 (Convolutional)"``: how errors name this layer."""
        return f"{self.name or 'unnamed'} ({type(self).__name__})"

    def spatial_shape(self, input_shape, rank):
        """The spatial axes of a per-sample ``(*spatial, channels)`` shape, checking there are ``rank``."""
        if len(input_shape) != rank + 1:
            raise ValueError(
                f"{self.describe()}: expected a per-sample input of rank {rank + 1} "
                f"(spatial axes and channels), got shape {tuple(input_shape)}"
            )
        return tuple(input_shape[:-1])

    def window_geometry(self, input_shape, window, stride, padding):
        """``(pads, out_spatial)`` of a sliding window over ``input_shape``, or a ValueError naming this layer."""
        spatial = self.spatial_shape(input_shape, len(window))
        pads = resolve_padding(padding, spatial, window, stride)
        try:
            return pads, output_spatial_shape(spatial, window, stride, pads)
        except ValueError as error:
            raise ValueError(f"{self.describe()}: input {tuple(input_shape)}: {error}") from None

    def check_input(self, x):
        """Raise ``ValueError`` if a batch ``x`` does not match the built per-sample input shape."""
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"{self.describe()}: expected input of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} output_shape={self.output_shape}>"


class ActivatedLayer(Layer):
    """A layer whose result goes through an ``activation=`` function (Dense, convolutions).

    Subclasses compute the pre-activation ``z`` and return ``self.activate(z)``, and implement
    ``backward_preactivation(dz)``, the backward pass from ``dL/dz``: a fused softmax/sigmoid
    cross-entropy starts there, skipping the activation's Jacobian.
    """

    def __init__(self, activation=None, alpha=None, activity_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation, alpha=alpha)
        self.activity_regularizer = regularizers.get(
            activity_regularizer, f"{type(self).__name__}: activity_regularizer")
        self._activity_scale = None

    def build(self, input_shape):
        super().build(input_shape)
        # An activation along an axis (a softmax) needs a feature axis of the output: refused here,
        # not as NumPy's AxisError at the first forward pass.
        axis = getattr(self.activation, "axis", None)
        rank = len(self.output_shape) + 1
        if axis is not None and (not -rank < axis < rank or axis % rank == 0):
            raise ValueError(f"{self.describe()}: the activation's axis {axis} is not a feature axis "
                             f"of outputs of shape (N, {', '.join(map(str, self.output_shape))})")

    def activate(self, z):
        """``activation(z)``, keeping what backward needs; ``z`` may be overwritten (in-place ReLU).

        With an ``activity_regularizer``, inside an open :class:`~modularcnn.regularizers.ActivityTally`
        (the loss's forward pass), the output's penalty is counted there and its gradient is added in
        :meth:`backward`.
        """
        a = self.activation.forward_inplace(z)
        self.preactivation = None if a is z else z
        self._a = a
        tally = regularizers.current_tally() if self.activity_regularizer is not None else None
        self._activity_scale = None if tally is None else tally.add(self.activity_regularizer, a)
        return a

    def activation_gradient(self, dy):
        """``dL/dz`` from ``dL/da`` (shaped like the output) through the activation of the last
        :meth:`activate` call, with the activity penalty's gradient (a fused step of the planner that
        computes ``z`` its own way goes on from here)."""
        if self._activity_scale:
            # d(weight * r(a) / N) / da, added to what comes from above (never in place: dy is theirs).
            dy = dy + dy.dtype.type(self._activity_scale) * self.activity_regularizer.gradient(self._a)
        return self.activation.backward(dy, self.preactivation, self._a)

    def backward(self, dy):
        return self.backward_preactivation(self.activation_gradient(dy))

    def backward_preactivation(self, dz):
        raise NotImplementedError

    def get_config(self):
        config = {**super().get_config(), "activation": activations.serialize(self.activation)}
        if hasattr(self.activation, "alpha"):
            config["alpha"] = self.activation.alpha
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return {**config, **self.weight_options_config()}
