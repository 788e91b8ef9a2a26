"""The residual block: ``Residual([...layers...])`` computes ``shortcut(x) + block(x)``.

The block is a short sequence of ordinary layers, built one after the other as :class:`~modularcnn.Net`
builds its own. The shortcut is the identity when the block keeps the shape, and otherwise a
*projection*: a 1x1 convolution with the stride that matches the block's spatial size (optionally followed
by batch normalisation), as in He et al.'s ResNet.

To the network the block looks like a single layer. Its ``params`` and ``grads`` are views over the inner
layers' dictionaries under ``"<inner layer>/<name>"`` keys (``"convolutional/kernel"``), so the optimiser,
``get_weights``/``set_weights`` and saving reach the inner arrays themselves.
"""

from collections.abc import MutableMapping

from .base import Layer, get_layer_class, register_layer, snake_case

SHORTCUTS = ("identity", "projection", "projection_bn")


class _MergedDict(MutableMapping):
    """``{"<layer>/<key>": array}`` over one attribute (``params`` or ``grads``) of several layers.

    Reads and writes go to the inner layers' own dictionaries; nothing is copied.
    """

    def __init__(self, owner, attribute):
        self._owner = owner
        self._attribute = attribute

    def _locate(self, key):
        name, sep, inner = str(key).partition("/")
        if sep:
            for layer in self._owner.sublayers:
                if layer.name == name:
                    return getattr(layer, self._attribute), inner
        raise KeyError(key)

    def __getitem__(self, key):
        table, inner = self._locate(key)
        return table[inner]

    def __setitem__(self, key, value):
        table, inner = self._locate(key)
        table[inner] = value

    def __delitem__(self, key):
        table, inner = self._locate(key)
        del table[inner]

    def __iter__(self):
        for layer in self._owner.sublayers:
            for inner in list(getattr(layer, self._attribute)):
                yield f"{layer.name}/{inner}"

    def __len__(self):
        return sum(len(getattr(layer, self._attribute)) for layer in self._owner.sublayers)

    def __repr__(self):
        return f"{{{', '.join(f'{k!r}: <{self[k].shape}>' for k in self)}}}"


def _layer_list(layers, what):
    layers = list(layers) if isinstance(layers, (list, tuple)) else None
    if not layers or not all(isinstance(layer, Layer) for layer in layers):
        raise ValueError(f"Residual: {what} must be a non-empty list of Layer instances, got {layers!r}")
    if len({id(layer) for layer in layers}) != len(layers):
        raise ValueError(f"Residual: the same layer instance appears twice in {what}")
    return layers


def _serialize(layers):
    return [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in layers]


def _deserialize(entries, custom_objects):
    return [get_layer_class(entry["class_name"], custom_objects).from_config(dict(entry["config"]))
            for entry in entries]


def projection_strides(input_shape, output_shape):
    """Strides of a 1x1 convolution turning ``input_shape``'s spatial size into ``output_shape``'s.

    Along each axis the smallest ``s`` with ``(n_in - 1) // s + 1 == n_out``; ``None`` if none exists
    (the block grew the input, or changed the rank).
    """
    if len(input_shape) != len(output_shape):
        return None
    strides = []
    for n_in, n_out in zip(input_shape[:-1], output_shape[:-1]):
        stride = next((s for s in range(1, n_in + 1) if (n_in - 1) // s + 1 == n_out), None)
        if stride is None:
            return None
        strides.append(stride)
    return tuple(strides)


@register_layer
class Residual(Layer):
    """``y = shortcut(x) + block(x)``, with an exact backward pass through both branches.

    Parameters
    ----------
    layers : list of Layer
        The block, applied in order; e.g. ``[Conv2D(16, 3, padding="same"), BatchNormalization(),
        Activation("relu"), Conv2D(16, 3, padding="same"), BatchNormalization()]``. Put the ReLU that
        follows the addition after the ``Residual``, as its own layer.
    shortcut : None, "identity", "projection", "projection_bn" or list of Layer
        ``None`` (default): the identity when the block keeps the shape, else ``"projection"``.
        ``"projection"``: a 1x1 convolution (with bias, no activation) whose stride matches the block's
        spatial size; a :class:`Dense` without spatial axes. ``"projection_bn"``: the same without
        bias, followed by :class:`BatchNormalization`. A list of layers: your own shortcut, whose
        output shape must equal the block's.
    input_shape, name, trainable
        As for every layer. ``trainable=False`` freezes the whole block; inner layers may also be
        frozen one by one.

    The block's layers are in :attr:`block`, the shortcut's in :attr:`shortcut_layers` (empty for the
    identity). Inner layers get unique names within the block (``"convolutional"``, ``"convolutional_1"``,
    ``"batch_normalization"``; projection layers ``"shortcut_convolutional"``, ...), and their parameters
    appear in :attr:`params` as ``"convolutional/kernel"``.
    """

    def __init__(self, layers, shortcut=None, name=None, input_shape=None, trainable=True):
        # Not called ``layers``: tools tell a Net from a layer by that attribute.
        self.block = []
        self.shortcut_layers = []
        super().__init__(input_shape=input_shape, name=name, trainable=trainable)
        self.block = _layer_list(layers, "layers")
        if isinstance(shortcut, (list, tuple)):
            self.shortcut = _layer_list(shortcut, "shortcut")
            if any(layer in self.block for layer in self.shortcut):
                raise ValueError("Residual: a layer cannot be both in the block and in the shortcut")
            self.shortcut_layers = list(self.shortcut)
        elif shortcut is None or shortcut in SHORTCUTS:
            self.shortcut = shortcut
        else:
            raise ValueError(f"Residual: shortcut must be None, one of {SHORTCUTS} or a list of layers, "
                             f"got {shortcut!r}")

    # -- the inner layers ------------------------------------------------------------------------

    @property
    def sublayers(self):
        """Block layers, then shortcut layers (empty for the identity)."""
        return list(self.block) + list(self.shortcut_layers)

    @property
    def params(self):
        """All inner state as ``{"<inner layer>/<name>": array}`` (a live view, not a copy)."""
        return _MergedDict(self, "params")

    @params.setter
    def params(self, value):
        # Assigning replaces every inner layer's state (gradcheck assigns {} before rebuilding).
        for layer in self.sublayers:
            layer.params = {}
        merged = self.params
        for key, array in dict(value).items():
            merged[key] = array

    @property
    def grads(self):
        """Inner gradients from the last backward pass, keyed like :attr:`params`."""
        return _MergedDict(self, "grads")

    @grads.setter
    def grads(self, value):
        for layer in self.sublayers:
            layer.grads = {}
        merged = self.grads
        for key, array in dict(value).items():
            merged[key] = array

    @property
    def non_trainable_params(self):
        """Inner state that is not a weight (batch-norm moving statistics), keyed like :attr:`params`."""
        return tuple(f"{layer.name}/{key}"
                     for layer in self.sublayers for key in layer.non_trainable_params)

    @property
    def trainable_params(self):
        """What the optimiser updates: inner trainable parameters (none when the block is frozen)."""
        if not self.trainable:
            return {}
        return {f"{layer.name}/{key}": value
                for layer in self.sublayers for key, value in layer.trainable_params.items()}

    # -- lifecycle -------------------------------------------------------------------------------

    def _name_layers(self, layers, prefix, taken):
        counts = {}
        for layer in layers:
            if layer.name is None:
                base = prefix + snake_case(type(layer).__name__)
                count = counts.get(base, 0)
                name = base if count == 0 else f"{base}_{count}"
                while name in taken:
                    count += 1
                    name = f"{base}_{count}"
                counts[base] = count + 1
                layer.name = name
            elif layer.name in taken:
                raise ValueError(f"{self.describe()}: two inner layers are named {layer.name!r}")
            taken.add(layer.name)

    def _build_chain(self, layers, shape, branch):
        for layer in layers:
            layer.rng = self.rng
            layer.dtype = self.dtype
            try:
                layer.build(shape)
            except ValueError as error:
                raise ValueError(f"{self.describe()}: {branch}: {error}") from None
            shape = tuple(layer.output_shape)
        return shape

    def _projection(self, input_shape, output_shape):
        from .convolutional import Conv1D, Conv3D, Convolutional
        from .dense import Dense
        from .normalization import BatchNormalization

        strides = projection_strides(input_shape, output_shape)
        if strides is None:
            raise ValueError(
                f"{self.describe()}: no 1x1 projection shortcut maps the input {tuple(input_shape)} to "
                f"the block's output {tuple(output_shape)} (the block must keep the rank and may only "
                "shrink spatial axes); pass shortcut=[...] with your own layers"
            )
        with_bn = self.shortcut == "projection_bn"
        filters = output_shape[-1]
        if not strides:
            layers = [Dense(filters, use_bias=not with_bn)]
        else:
            conv = {1: Conv1D, 2: Convolutional, 3: Conv3D}.get(len(strides))
            if conv is None:
                raise ValueError(f"{self.describe()}: no projection for {len(strides)} spatial axes")
            layers = [conv(filters, 1, strides, "valid", use_bias=not with_bn)]
        if with_bn:
            layers.append(BatchNormalization())
        return layers

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.block:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def build(self, input_shape):
        input_shape = tuple(int(d) for d in input_shape)
        if self.rng is None:
            self.rng = self.random
        taken = set()
        self._name_layers(self.block, "", taken)
        output_shape = self._build_chain(self.block, input_shape, "block")
        if isinstance(self.shortcut, list):
            self.shortcut_layers = self.shortcut
        elif self.shortcut == "identity" or (self.shortcut is None and output_shape == input_shape):
            if output_shape != input_shape:
                raise ValueError(
                    f"{self.describe()}: an identity shortcut needs the block to keep the shape, but it "
                    f"maps {input_shape} to {output_shape}; use shortcut='projection'"
                )
            self.shortcut_layers = []
        else:
            self.shortcut_layers = self._projection(input_shape, output_shape)
        self._name_layers(self.shortcut_layers, "shortcut_", taken)
        shortcut_shape = self._build_chain(self.shortcut_layers, input_shape, "shortcut")
        if shortcut_shape != output_shape:
            raise ValueError(
                f"{self.describe()}: the shortcut maps {input_shape} to {shortcut_shape}, but the block "
                f"gives {output_shape}; both branches must give the same shape"
            )
        self.input_shape = input_shape
        self.output_shape = output_shape
        self.built = True

    # -- computing -------------------------------------------------------------------------------

    def forward(self, x, training=False):
        self.check_input(x)
        rng = self.random
        h = x
        for layer in self.block:
            layer.rng = rng  # whoever reseeds this block (gradcheck) reseeds its dropout too
            h = layer.forward(h, training=training)
        s = x
        for layer in self.shortcut_layers:
            layer.rng = rng
            s = layer.forward(s, training=training)
        return h + s

    def backward(self, dy):
        need = self.input_grad_needed
        for chain in (self.block, self.shortcut_layers):
            if chain:
                chain[0].input_grad_needed = need
        try:
            # The sum sends dy unchanged into both branches; their input gradients add up.
            g = dy
            for layer in reversed(self.block):
                g = layer.backward(g)
            s = dy
            for layer in reversed(self.shortcut_layers):
                s = layer.backward(s)
        finally:
            for chain in (self.block, self.shortcut_layers):
                if chain:
                    chain[0].input_grad_needed = True
        if not need:
            return None
        return g + s

    # -- config ----------------------------------------------------------------------------------

    def get_config(self):
        shortcut = _serialize(self.shortcut) if isinstance(self.shortcut, list) else self.shortcut
        return {**super().get_config(), "layers": _serialize(self.block), "shortcut": shortcut}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuild the block, creating inner layers through the layer registry (or ``custom_objects``)."""
        config = dict(config)
        config["layers"] = _deserialize(config["layers"], custom_objects)
        if isinstance(config.get("shortcut"), list):
            config["shortcut"] = _deserialize(config["shortcut"], custom_objects)
        return cls(**config)

    def __repr__(self):
        return (f"<Residual name={self.name!r} layers={len(self.block)} "
                f"shortcut={len(self.shortcut_layers) or 'identity'} output_shape={self.output_shape}>")
