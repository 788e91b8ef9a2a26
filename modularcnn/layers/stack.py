"""A stack of layers run one after the other: what ``Net``, ``Residual`` and the profiler share.

:class:`LayerStack` holds a list of layers (the very list its owner exposes, not a copy) and does, in
one place, what each of them used to write out: unique default names, the build chain (each layer
built against the previous one's output shape), the forward and backward loops (with the first
layer's ``input_grad_needed`` cleared when no one needs ``dL/dx``), and the parameters under
``"<layer>/<key>"`` names.

The loops take an optional list of *steps* in place of the layers (an execution plan, where a fused
step runs several layers, :mod:`modularcnn.execution`) and an optional ``timer`` (the profiler's),
so that every way of running a stack goes through the same code.
"""

from collections.abc import MutableMapping

from .base import snake_case


class NamedArrays(MutableMapping):
    """``{"<layer>/<key>": array}`` over one attribute (``params`` or ``grads``) of several layers.

    ``layers`` is a callable returning the current layers. Reads and writes go to the layers' own
    dictionaries; nothing is copied.
    """

    def __init__(self, layers, attribute):
        self._layers = layers
        self._attribute = attribute

    def _locate(self, key):
        name, sep, inner = str(key).partition("/")
        if sep:
            for layer in self._layers():
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
        for layer in self._layers():
            for inner in list(getattr(layer, self._attribute)):
                yield f"{layer.name}/{inner}"

    def __len__(self):
        return sum(len(getattr(layer, self._attribute)) for layer in self._layers())

    def __repr__(self):
        return f"{{{', '.join(f'{k!r}: <{self[k].shape}>' for k in self)}}}"


def _plain_timer(step, phase, function, *args, **kwargs):
    return function(*args, **kwargs)


class LayerStack:
    """Layers in order, with their names, build chain, passes and ``"<layer>/<key>"`` parameters.

    Parameters
    ----------
    layers : list of Layer, optional
        Kept by reference: the owner may expose the same list (``Net.layers``, ``Residual.block``).
    prefix : str
        Prepended to default names (``"shortcut_"`` for a residual block's shortcut).
    """

    def __init__(self, layers=None, prefix=""):
        self.layers = layers if layers is not None else []
        self.prefix = prefix
        self._name_counts = {}

    # -- names -----------------------------------------------------------------------------------

    def unique_name(self, layer, taken=(), duplicate="a layer named {name!r} is already in this network"):
        """``layer.name`` when it is free, else a ValueError (``duplicate``, formatted with ``name``);
        for an unnamed layer its snake-cased class name with the stack's prefix and the first free
        counter (``conv2d``, ``conv2d_1``, ...). ``taken`` are names used elsewhere (another stack of
        the same owner). Nothing changes until :meth:`count_name` counts the layer in."""
        used = {existing.name for existing in self.layers if existing is not layer} | set(taken)
        if layer.name is not None:
            if layer.name in used:
                raise ValueError(duplicate.format(name=layer.name))
            return layer.name
        base = self._base(layer)
        count = self._name_counts.get(base, 0)
        name = base if count == 0 else f"{base}_{count}"
        while name in used:
            count += 1
            name = f"{base}_{count}"
        return name

    def _base(self, layer):
        return self.prefix + snake_case(type(layer).__name__)

    def count_name(self, layer):
        """Count ``layer`` against its class's default names: counters only grow, as in Keras, so a
        removed layer's name is not given again."""
        base = self._base(layer)
        self._name_counts[base] = self._name_counts.get(base, 0) + 1

    def name_all(self, taken=(), duplicate="a layer named {name!r} is already in this network"):
        """Give every unnamed layer its :meth:`unique_name` (and check the given ones); returns the
        set of names, ``taken`` included."""
        names = set(taken)
        for layer in self.layers:
            unnamed = layer.name is None
            layer.name = self.unique_name(layer, names, duplicate)
            if unnamed:
                self.count_name(layer)
            names.add(layer.name)
        return names

    # -- building --------------------------------------------------------------------------------

    @staticmethod
    def build_layer(layer, shape, rng, dtype, keep_built=False):
        """Build ``layer`` for ``shape`` with the owner's generator and dtype (``keep_built``: not
        again when it already is, for that shape). A failed build leaves the layer unbuilt, without
        half-made parameters. Returns its output shape."""
        layer.adopt_rng(rng)
        layer.dtype = dtype
        if not (keep_built and layer.built and layer.input_shape == tuple(shape)):
            try:
                layer.build_checked(shape)
            except BaseException:
                layer.built, layer.params, layer.output_shape = False, {}, None
                raise
        return tuple(layer.output_shape)

    def build(self, input_shape, rng, dtype, where=None):
        """Build every layer in turn from ``input_shape``; returns the stack's output shape.

        A layer's ValueError is raised again prefixed with ``where`` (``"res (Residual): block"``).
        """
        shape = tuple(input_shape)
        for layer in self.layers:
            try:
                shape = self.build_layer(layer, shape, rng, dtype)
            except ValueError as error:
                if where is None:
                    raise
                raise ValueError(f"{where}: {error}") from None
        return shape

    def output_shape(self, input_shape):
        """The output shape for ``input_shape`` without building anything."""
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    # -- computing -------------------------------------------------------------------------------

    def forward(self, x, training=False, steps=None, rng=None, timer=None):
        """Run ``x`` through ``steps`` (default: the layers) in order.

        ``rng``, when given, is handed to every layer first (whoever reseeds the owner reseeds its
        dropout too). ``timer(step, "forward", function, *args)`` wraps each call when given.
        """
        if rng is not None:
            for layer in self.layers:
                layer.adopt_rng(rng)
        steps = self.layers if steps is None else steps
        if timer is None:     # the common case, without a call more per step (single-image latency)
            for step in steps:
                x = step.forward(x, training=training)
            return x
        for step in steps:
            x = timer(step, "forward", step.forward, x, training=training)
        return x

    def backward(self, dy, steps=None, input_grad_needed=True, preactivation=False, timer=None):
        """Back-propagate ``dy`` through ``steps`` (default: the layers) in reverse; returns dL/dx
        (None when ``input_grad_needed`` is false: the first layer skips that product).

        ``preactivation=True`` says ``dy`` is the gradient of the last layer's logits (a fused loss):
        the last step starts from its ``backward_preactivation``.
        """
        timer = timer or _plain_timer
        steps = self.layers if steps is None else steps
        if not steps:
            return dy if input_grad_needed else None
        first = self.layers[0]
        first.input_grad_needed = input_grad_needed
        try:
            gradient = dy
            for position in range(len(steps) - 1, -1, -1):
                step = steps[position]
                if preactivation and position == len(steps) - 1:
                    gradient = timer(step, "backward", step.backward_preactivation, gradient)
                else:
                    gradient = timer(step, "backward", step.backward, gradient)
        finally:
            first.input_grad_needed = True
        return gradient

    # -- parameters ------------------------------------------------------------------------------

    def params(self):
        """Every layer's state as a live ``{"<layer>/<key>": array}`` view."""
        return NamedArrays(lambda: self.layers, "params")

    def grads(self):
        """Every layer's gradients, keyed like :meth:`params`."""
        return NamedArrays(lambda: self.layers, "grads")

    def trainable_params(self):
        """``{"<layer>/<key>": array}`` of what the optimiser updates (frozen layers give none)."""
        return {f"{layer.name}/{key}": value
                for layer in self.layers for key, value in layer.trainable_params.items()}

    def trainable_grads(self):
        """The gradients of :meth:`trainable_params`, from the last backward pass."""
        return {f"{layer.name}/{key}": layer.grads[key]
                for layer in self.layers for key in layer.trainable_params}

    def non_trainable_keys(self):
        """``"<layer>/<key>"`` of the state that is not a weight (batch-norm moving statistics)."""
        return tuple(f"{layer.name}/{key}" for layer in self.layers for key in layer.non_trainable_params)

    def count_params(self, trainable_only=False):
        """Scalars in every layer's ``params`` (only the trainable ones if asked)."""
        if trainable_only:
            return sum(layer.count_trainable_params() for layer in self.layers)
        return sum(layer.count_params() for layer in self.layers)

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        return f"<LayerStack {[layer.name for layer in self.layers]}>"
