"""The residual block: ``Residual([...layers...])`` computes ``shortcut(x) + block(x)``.

The block is a short sequence of ordinary layers, built one after the other as :class:`~modularcnn.Net`
builds its own. The shortcut is the identity when the block keeps the shape, and otherwise a
*projection*: a 1x1 convolution with the stride that matches the block's spatial size (optionally followed
by batch normalisation), as in He et al.'s ResNet.

To the network the block looks like a single layer. Its ``params`` and ``grads`` are views over the inner
layers' dictionaries under ``"<inner layer>/<name>"`` keys (``"convolutional/kernel"``), so the optimiser,
``get_weights``/``set_weights`` and saving reach the inner arrays themselves. Block and shortcut are two
:class:`~modularcnn.layers.stack.LayerStack` objects, and the layer adds their outputs.
"""

from .base import Layer, check_unclaimed, claim, frozen_scope, get_layer_class, register_layer
from .stack import LayerStack, NamedArrays

SHORTCUTS = ("identity", "projection", "projection_bn")


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
        check_unclaimed(self.sublayers, self, "Residual")
        claim(self.sublayers, self)

    # -- the inner layers ------------------------------------------------------------------------

    @property
    def sublayers(self):
        """Block layers, then shortcut layers (empty for the identity)."""
        return list(self.block) + list(self.shortcut_layers)

    @property
    def params(self):
        """All inner state as ``{"<inner layer>/<name>": array}`` (a live view, not a copy)."""
        return NamedArrays(lambda: self.sublayers, "params")

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
        return NamedArrays(lambda: self.sublayers, "grads")

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
        block, shortcut = self._stacks()
        return block.non_trainable_keys() + shortcut.non_trainable_keys()

    @property
    def trainable_params(self):
        """What the optimiser updates: inner trainable parameters (none when the block is frozen)."""
        if not self.trainable:
            return {}
        block, shortcut = self._stacks()
        return {**block.trainable_params(), **shortcut.trainable_params()}

    # -- lifecycle -------------------------------------------------------------------------------

    def _stacks(self):
        """The block and the shortcut as two stacks over the very lists :attr:`block` and
        :attr:`shortcut_layers`."""
        return LayerStack(self.block), LayerStack(self.shortcut_layers, prefix="shortcut_")

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
        return LayerStack(self.block).output_shape(input_shape)

    def build(self, input_shape):
        input_shape = tuple(int(d) for d in input_shape)
        if self.rng is None:
            self.rng = self.random
        duplicate = f"{self.describe()}: two inner layers are named {{name!r}}"
        block = LayerStack(self.block)
        taken = block.name_all(duplicate=duplicate)
        output_shape = block.build(input_shape, self.rng, self.dtype, f"{self.describe()}: block")
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
        shortcut = LayerStack(self.shortcut_layers, prefix="shortcut_")
        shortcut.name_all(taken, duplicate)
        shortcut_shape = shortcut.build(input_shape, self.rng, self.dtype,
                                        f"{self.describe()}: shortcut")
        if shortcut_shape != output_shape:
            raise ValueError(
                f"{self.describe()}: the shortcut maps {input_shape} to {shortcut_shape}, but the block "
                f"gives {output_shape}; both branches must give the same shape"
            )
        self.input_shape = input_shape
        self.output_shape = output_shape
        self.built = True

    # -- computing -------------------------------------------------------------------------------

    def forward(self, x, training=False, steps=None):
        """``shortcut(x) + block(x)``; ``steps`` (the planner's, :mod:`modularcnn.execution`) is a
        pair ``(block steps, shortcut steps)`` run in place of the layers."""
        self.check_input(x)
        block, shortcut = self._stacks()
        block_steps, shortcut_steps = steps or (None, None)
        # Whoever reseeds this block (gradcheck) reseeds its dropout too.
        rng = self.random
        with frozen_scope(not self.trainable):  # a frozen block's batch norms run as in inference
            return (block.forward(x, training=training, steps=block_steps, rng=rng)
                    + shortcut.forward(x, training=training, steps=shortcut_steps, rng=rng))

    def backward(self, dy, steps=None):
        """dL/dx from ``dy``, through the ``steps`` of the forward pass when it had them."""
        need = self.input_grad_needed
        block, shortcut = self._stacks()
        block_steps, shortcut_steps = steps or (None, None)
        # The sum sends dy unchanged into both branches; their input gradients add up.
        g = block.backward(dy, steps=block_steps, input_grad_needed=need)
        s = shortcut.backward(dy, steps=shortcut_steps, input_grad_needed=need)
        return g + s if need else None

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
