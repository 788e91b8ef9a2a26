"""``Model(inputs, outputs)``: Keras's functional API — graphs of layers, several inputs and outputs.

::

    x = Input((28, 28, 1), name="image")
    h = Conv2D(8, 3, padding="same", activation="relu")(x)
    y = Add()([h, Conv2D(8, 1)(x)])
    model = Model(x, Dense(10, activation="softmax")(Flatten()(y)))

The graph is traced and validated by :mod:`modularcnn.graph` and run by
:mod:`modularcnn.graph_execution`. A ``Model`` is a :class:`~modularcnn.Net` for everything that is
not about the layer stack: ``compile``, ``fit``, ``evaluate``, ``predict``, ``train_on_batch``,
callbacks, strategies, weights and saving are the same code. What differs:

- *Inputs and outputs.* With one input and one output, data is an array as for a ``Net``. With
  several, ``fit``/``evaluate``/``predict`` take a list (in the order of ``inputs``) or a dict keyed by
  input name, and targets a list or a dict keyed by output name; ``predict`` returns a list of arrays
  (see :mod:`modularcnn.training.structured`).
- *Losses.* ``compile(loss=...)`` takes one loss for every output, a list (one per output) or a dict
  by output name, and ``loss_weights`` (list or dict): the loss minimised is
  ``sum_k loss_weights[k] * loss_k``. ``metrics`` is a list applied to every output, a list of lists
  or a dict by output name; with several outputs they are logged as ``"<output>_<metric>"``, with each
  output's loss as ``"<output>_loss"``, as Keras names them.
- ``backward(dout)`` takes one gradient per output and returns one per input.
"""

import numpy as np

from . import graph as graph_module
from . import summary as _summary
from . import validation
from .execution import enclosing, options_for
from .graph_execution import GraphExecutor
from .layers.base import frozen_scope
from .layers.nested import register_network
from .layers.symbolic import SymbolicTensor, is_symbolic
from .net import Net
from .training.rows import Rows


@register_network
class Model(Net):
    """A graph of layers from ``inputs`` to ``outputs``.

    Parameters
    ----------
    inputs : SymbolicTensor, list or dict of them
        ``Input(...)`` tensors.
    outputs : SymbolicTensor, list or dict of them
        Tensors computed from the inputs by calling layers; a dict names the outputs by its keys.
    name : str, optional
    seed : int, optional
        Seeds dropout, shuffling and validation splits (every layer's random draws during training).
        Initial weights are drawn when a layer is first called: seed those with
        :func:`modularcnn.utils.set_random_seed` before building the graph.

    All inputs must share one floating dtype (``Input(dtype=...)``, float32 by default); it is the
    model's compute dtype.
    """

    def __init__(self, inputs, outputs, name=None, seed=None, trainable=True):
        input_tensors, input_keys = graph_module.as_tensors(inputs, "inputs")
        output_tensors, output_keys = graph_module.as_tensors(outputs, "outputs")
        dtypes = {t.dtype for t in input_tensors}
        if len(dtypes) > 1:
            raise ValueError(f"Model: the inputs have different dtypes {sorted(d.name for d in dtypes)}")
        super().__init__(name=name or "model", seed=seed, dtype=dtypes.pop())
        self.trainable = validation.boolean(trainable, "trainable", "Model")
        self.graph = graph_module.trace(input_tensors, output_tensors)
        self.layers = list(self.graph.layers)
        if seed is not None:
            for layer in self.layers:
                layer.adopt_rng(self.rng)
        self.input_names = input_keys or [t.name for t in input_tensors]
        self.output_names = output_keys or [t.name for t in output_tensors]
        if len(set(self.output_names)) != len(self.output_names):
            # The same layer's tensor twice (or two calls of a shared layer) as outputs.
            self.output_names = [f"{name}_{k}" if self.output_names.count(name) > 1 else name
                                 for k, name in enumerate(self.output_names)]
        self._structure = {"inputs": "dict" if input_keys else type(inputs).__name__,
                           "outputs": "dict" if output_keys else type(outputs).__name__}
        self._executor = GraphExecutor(self.graph)
        self.loss_weights = None

    # -- structure -------------------------------------------------------------------------------

    @property
    def inputs(self):
        """The input tensors, in order."""
        return list(self.graph.inputs)

    @property
    def outputs(self):
        """The output tensors, in order."""
        return list(self.graph.outputs)

    @property
    def structured(self):
        """True with several inputs or outputs: data then goes in lists or dicts."""
        return len(self.graph.inputs) > 1 or len(self.graph.outputs) > 1

    @property
    def input_shapes(self):
        return [t.sample_shape for t in self.graph.inputs]

    @property
    def output_shapes(self):
        return [t.sample_shape for t in self.graph.outputs]

    @property
    def input_shape(self):
        """The per-sample input shape, or a list of them with several inputs."""
        shapes = self.input_shapes
        return shapes[0] if len(shapes) == 1 else shapes

    @input_shape.setter
    def input_shape(self, value):
        pass  # Net.__init__ assigns it; a Model's inputs say it

    @property
    def output_shape(self):
        """The per-sample output shape, or a list of them with several outputs."""
        shapes = self.output_shapes
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_structure(self):
        """How the outputs were given: ``"dict"`` (``predict`` returns a dict by name) or a sequence."""
        return self._structure["outputs"]

    @property
    def output_layer(self):
        """The layer making the (single) output; None with several outputs."""
        return self.graph.outputs[0].node.layer if len(self.graph.outputs) == 1 else None

    def output_instance(self, index=0):
        """The object that computed output ``index`` in the last forward pass (its layer, or a shared
        layer's call instance): where a fused loss finds the pre-activation."""
        return self._executor.instance(self.graph.outputs[index].node)

    def output_fusable(self, index=0):
        """Whether output ``index`` may be back-propagated from its layer's pre-activation: nothing
        else consumes it and it is the output of a layer (not an Input)."""
        tensor = self.graph.outputs[index]
        return (bool(tensor.node.inputs) and not self.graph.consumers.get(id(tensor))
                and sum(t is tensor for t in self.graph.outputs) == 1)

    def add(self, layer):
        raise ValueError("Model.add: a Model is built from Input(...) tensors and layer calls; use "
                         "Net for a stack built with add")

    # -- computing -------------------------------------------------------------------------------

    def as_input(self, x):
        """``x`` as one array (one input) or a list of arrays in input order, of the model's dtype."""
        arrays = self._input_arrays(x)
        checked = [self._checked(a, shape, name) for a, shape, name in
                   zip(arrays, self.input_shapes, self.input_names)]
        if len({len(a) for a in checked}) > 1:
            raise ValueError(f"{self.name}: the inputs have different numbers of samples: "
                             f"{[len(a) for a in checked]}")
        return checked[0] if len(checked) == 1 else Rows(checked)

    def _input_arrays(self, x):
        count = len(self.graph.inputs)
        if isinstance(x, Rows):
            x = x.arrays
        if isinstance(x, dict):
            missing = [n for n in self.input_names if n not in x]
            extra = [k for k in x if k not in self.input_names]
            if missing or extra:
                raise ValueError(f"{self.name}: the inputs are {self.input_names}; the dict "
                                 f"{'lacks ' + str(missing) if missing else ''}"
                                 f"{' and ' if missing and extra else ''}"
                                 f"{'has unknown ' + str(extra) if extra else ''}")
            return [x[n] for n in self.input_names]
        if count == 1:
            # One input: an array, or a list holding that one array (as Keras accepts).
            if (isinstance(x, (list, tuple)) and len(x) == 1
                    and np.ndim(x[0]) == len(self.input_shapes[0]) + 1):
                return [x[0]]
            return [x]
        if not isinstance(x, (list, tuple)):
            raise ValueError(f"{self.name}: the model has {count} inputs {self.input_names}: give a "
                             f"list or a dict of arrays, got {type(x).__name__}")
        if len(x) != count:
            raise ValueError(f"{self.name}: expected {count} input arrays {self.input_names}, "
                             f"got a {type(x).__name__} of {len(x)}")
        return list(x)

    def _checked(self, x, expected, name):
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise ValueError(f"{self.name}: input {name!r} must be numeric, got dtype {x.dtype}")
        if x.ndim == len(expected) and expected[-1] == 1 and tuple(x.shape[1:]) == expected[:-1]:
            x = x[..., None]
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != tuple(expected):
            raise ValueError(f"{self.name}: input {name!r}: expected shape "
                             f"(N, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        return np.ascontiguousarray(x, dtype=self.dtype)

    def forward(self, x, training=False):
        """Outputs for ``x`` (see :meth:`as_input`): one array, or a list with several outputs."""
        x = self.as_input(x)
        arrays = x.arrays if isinstance(x, Rows) else [x]
        options = options_for(self)
        # A frozen model's batch norms run as in inference; a network nested in it as a layer plans
        # within this model's options.
        with frozen_scope(not self.trainable), enclosing(options):
            outputs = self._executor.forward(arrays, training=training, options=options)
        self._plan = self._executor.ran(options, self.name)
        return outputs[0] if len(outputs) == 1 else outputs

    def plan(self):
        """The steps :meth:`forward` runs, as a :class:`~modularcnn.execution.Plan`: each linear chain
        of the graph planned as a ``Net``'s layers are (fused steps included), and each merge layer;
        ``print(model.plan())`` shows them."""
        return self._executor.plan(options_for(self), self.name)

    def backward(self, dout, input_gradient=True, preactivation=False):
        """Back-propagate ``dout`` (one array per output, a list with several) through the graph.

        Fills every layer's ``grads`` (a shared layer's summed over its calls) and returns dL/d(input):
        one array, or a list with several inputs (None where ``input_gradient=False``).
        ``preactivation`` (a bool, or one per output) says a gradient is with respect to that output
        layer's pre-activation, as a fused softmax cross-entropy computes it.
        """
        count = len(self.graph.outputs)
        grads = list(dout) if count > 1 or isinstance(dout, (list, tuple)) else [dout]
        if len(grads) != count:
            raise ValueError(f"{self.name}: backward takes {count} output gradients, got {len(grads)}")
        for k, (g, shape) in enumerate(zip(grads, self.output_shapes)):
            if g is None or tuple(np.shape(g)[1:]) != tuple(shape):
                raise ValueError(f"{self.name}: the gradient of output {self.output_names[k]!r} must "
                                 f"have shape (N, {', '.join(map(str, shape))}), got "
                                 f"{None if g is None else np.shape(g)}")
        flags = list(preactivation) if isinstance(preactivation, (list, tuple)) else [preactivation] * count
        result = self._executor.backward(grads, input_gradient=input_gradient, preactivation=flags)
        return result[0] if len(result) == 1 else result

    def __call__(self, inputs, training=None):
        """On symbolic tensors: this model as one layer of a bigger graph. On arrays: ``forward``."""
        if is_symbolic(inputs) or (isinstance(inputs, dict) and inputs
                                   and all(isinstance(v, SymbolicTensor) for v in inputs.values())):
            from .layers.nested import as_layer  # noqa: PLC0415 - nested imports this module

            if isinstance(inputs, dict):
                inputs = [inputs[name] for name in self.input_names]
            return as_layer(self)(inputs, training=training)
        return self.forward(inputs, training=bool(training))

    def forwardpass(self, image):
        if self.structured:
            raise ValueError(f"{self.name}: forwardpass is for one-input, one-output networks")
        return super().forwardpass(image)

    # -- training --------------------------------------------------------------------------------

    def compile(self, optimizer="adam", loss="cross_entropy", metrics=("accuracy",), loss_weights=None):
        """As :meth:`Net.compile`, with one loss per output (one loss for all, a list or a dict by
        output name), ``loss_weights`` (a list or dict; 1 for each output by default) and metrics for
        every output (a list), per output (a list of lists) or by output name (a dict)."""
        from .training.structured import compile_model  # noqa: PLC0415

        compile_model(self, optimizer, loss, metrics, loss_weights)

    def make_objective(self):
        """The compiled loss bound to the outputs (see :mod:`modularcnn.training.structured`)."""
        from .training.structured import objective_for  # noqa: PLC0415

        return objective_for(self)

    # -- configuration ---------------------------------------------------------------------------

    def get_config(self):
        """The graph as JSON data: every layer's config and the calls that connect them."""
        config = graph_module.topology_config(self.graph, _layer_entry)
        return {"class_name": "Model", "name": self.name, "seed": self.seed, "dtype": self.dtype.name,
                "trainable": self.trainable, **config,
                "input_names": list(self.input_names), "output_names": list(self.output_names),
                "structure": dict(self._structure)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuild a model (fresh weights) from :meth:`get_config`'s output."""
        def make(entry):
            return graph_module.layer_from_entry(entry, custom_objects)

        inputs, outputs = graph_module.rebuild(config, make)
        structure = config.get("structure") or {}
        input_names, output_names = config.get("input_names"), config.get("output_names")
        if structure.get("inputs") == "dict" and isinstance(input_names, list) and len(input_names) == len(inputs):
            inputs = dict(zip(input_names, inputs))
        elif len(inputs) == 1 and structure.get("inputs") not in ("list", "tuple"):
            inputs = inputs[0]
        if structure.get("outputs") == "dict" and isinstance(output_names, list) and len(output_names) == len(outputs):
            outputs = dict(zip(output_names, outputs))
        elif len(outputs) == 1 and structure.get("outputs") not in ("list", "tuple"):
            outputs = outputs[0]
        model = cls(inputs, outputs, name=config.get("name"), seed=config.get("seed"),
                    trainable=bool(config.get("trainable", True)))
        return model

    # -- reporting -------------------------------------------------------------------------------

    def summary(self, line_length=None, positions=None, print_fn=print, expand_nested=False,
                show_trainable=None, show_plan=False):
        """The layer table with a "Connected to" column (the tensors each call takes), as Keras
        prints it; the options are :meth:`Net.summary`'s."""
        validation.function(print_fn, "print_fn", "summary")
        print_fn(_summary.summary_text(self, show_trainable=show_trainable, show_plan=show_plan,
                                       expand_nested=expand_nested, line_length=line_length,
                                       positions=positions))

    def __repr__(self):
        return (f"<Model name={self.name!r} inputs={len(self.graph.inputs)} "
                f"outputs={len(self.graph.outputs)} layers={len(self.layers)} "
                f"params={self.count_params():,}>")


def _layer_entry(layer):
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def is_model(obj):
    """True for a :class:`Model` (a graph), False for a plain ``Net``."""
    return isinstance(obj, Model)


__all__ = ["Model", "is_model"]
