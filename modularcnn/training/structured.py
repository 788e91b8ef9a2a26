"""Training a :class:`~modularcnn.Model` with several inputs or outputs: data, losses and metrics.

The training loop (:mod:`.loop`) is the same for every network; what changes with several inputs or
outputs is what a batch is and how the loss is formed, and that is all here:

- **Data.** ``x`` is a list of arrays in the order of the model's inputs, or a dict keyed by input
  name; ``y`` likewise by output. Each array is checked as a ``Net``'s input or target is (shape,
  dtype, finite values, class ids in range for cross-entropy), through a *port* per input and output
  that the checks of :mod:`.data` and :mod:`.sources` take in place of a network. A batch is a
  :class:`~.rows.Rows` (its ``len`` is the number of samples). Arrays, memmaps and HDF5 datasets
  stay as they are (each input is an :class:`~.sources.ArraySource`); a Sequence or generator yields
  ``(x, y)`` or ``(x, y, sample_weight)`` with ``x`` and ``y`` lists or dicts.
- **Losses.** :class:`MultiObjective` gives each output its own :class:`~.objective.Objective` (so a
  softmax output with cross-entropy is still fused) and minimises ``sum_k w_k * loss_k``.
- **Metrics and logs.** Every output's loss is logged as ``"<output>_loss"`` and its metrics as
  ``"<output>_<metric>"``, as Keras names them.

``sample_weight`` (one weight per sample) weighs every output's loss; ``class_weight`` and
``augment`` need a model with one output and one input respectively.
"""

import numpy as np

from .. import losses, metrics as metrics_module, optimizers
from ..errors import DataError
from .data import as_targets, check_batch_size
from .objective import Objective, forward_with_penalties
from .rows import Rows
from .sources import (
    ArraySource,
    Batch,
    IteratorSource,
    SequenceSource,
    check_array_input,
    input_batch,
    is_iterator,
    is_sequence,
    weight_vector,
)


class Port:
    """One input or output of a model, with the attributes the data checks read from a network."""

    def __init__(self, model, name, input_shape=None, output_shape=None, loss=None):
        self.name = f"{model.name}: {name}"
        self.input_shape = input_shape
        self.output_shape = output_shape
        self.dtype = model.dtype
        self.loss = loss


def input_ports(model):
    return [Port(model, f"input {name!r}", input_shape=shape)
            for name, shape in zip(model.input_names, model.input_shapes)]


def output_ports(model):
    output_losses = getattr(model, "output_losses", None) or [None] * len(model.output_names)
    return [Port(model, f"output {name!r}", output_shape=shape, loss=loss)
            for name, shape, loss in zip(model.output_names, model.output_shapes, output_losses)]


def by_position(values, names, what):
    """``values`` (a list/tuple in order, a dict by name, or one array when there is one name) as a
    list in the order of ``names``."""
    if isinstance(values, Rows):
        values = values.arrays
    if isinstance(values, dict):
        missing = [n for n in names if n not in values]
        extra = [k for k in values if k not in names]
        if missing or extra:
            raise ValueError(f"{what}: expected the keys {names}; "
                             + (f"missing {missing}" if missing else "")
                             + ("; " if missing and extra else "")
                             + (f"unknown {extra}" if extra else ""))
        return [values[n] for n in names]
    if isinstance(values, (list, tuple)) and len(names) > 1:
        if len(values) != len(names):
            raise ValueError(f"{what}: expected {len(names)} arrays {names}, got {len(values)}")
        return list(values)
    if len(names) == 1:
        if isinstance(values, (list, tuple)) and len(values) == 1 and np.ndim(values[0]) >= 1 \
                and hasattr(values[0], "shape"):
            return [values[0]]
        return [values]
    raise ValueError(f"{what}: the model has {len(names)} of them {names}: give a list or a dict "
                     f"keyed by name, got {type(values).__name__}")


# ------------------------------------------------------------------------------------------------
# Compiling
# ------------------------------------------------------------------------------------------------


def _per_output(value, names, what, single_types):
    """One value per output from a single value, a list or a dict by output name."""
    if isinstance(value, dict):
        extra = [k for k in value if k not in names]
        if extra:
            raise ValueError(f"compile: {what} names unknown outputs {extra}; outputs: {names}")
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)) and not isinstance(value, single_types):
        if len(value) != len(names):
            raise ValueError(f"compile: {what} has {len(value)} entries, but the model has "
                             f"{len(names)} outputs {names}")
        return list(value)
    return [value] * len(names)


class OutputLoss:
    """The metric ``"<output>_loss"``: output ``index``'s loss in the last computed batch (read
    from the objective, so it is the value that was minimised, sample weights included)."""

    def __init__(self, model, index):
        self.model, self.index = model, index

    def __call__(self, y_true, y_pred):
        return self.model._objective.last_values[self.index]


class OnOutput:
    """A metric applied to output ``index`` of the model's outputs and targets."""

    def __init__(self, metric, index):
        self.metric, self.index = metric, index

    def _pick(self, y_true, y_pred):
        ys = y_true.arrays if isinstance(y_true, Rows) else [y_true]
        outputs = y_pred if isinstance(y_pred, list) else [y_pred]
        return ys[self.index], outputs[self.index]

    def __call__(self, y_true, y_pred):
        return self.metric(*self._pick(y_true, y_pred))

    # A stateful metric (Precision, AUC, ...) keeps its counts for this output.
    @property
    def stateful(self):
        return getattr(self.metric, "stateful", False)

    def reset_state(self):
        self.metric.reset_state()

    def update_state(self, y_true, y_pred):
        self.metric.update_state(*self._pick(y_true, y_pred))

    def result(self):
        return self.metric.result()


def compile_model(model, optimizer, loss, metrics, loss_weights):
    """``Model.compile``: one loss (and weight and metrics) per output."""
    from .loop import compile as compile_net  # noqa: PLC0415 - loop imports this module

    names = list(model.output_names)
    chosen = [losses.get(entry if entry is not None else "cross_entropy")
              for entry in _per_output(loss, names, "loss", (str,))]
    if loss_weights is None:
        weights = [1.0] * len(names)
    else:
        weights = _per_output(loss_weights, names, "loss_weights", ())
        weights = [1.0 if w is None else w for w in weights]
        for name, w in zip(names, weights):
            if isinstance(w, bool) or not isinstance(w, (int, float, np.number)) or not np.isfinite(w) \
                    or w < 0:
                raise ValueError(f"compile: loss_weights[{name!r}] must be a finite number >= 0, "
                                 f"got {w!r}")
        weights = [float(w) for w in weights]
    if isinstance(metrics, str):
        metrics = (metrics,)
    if metrics is not None and not isinstance(metrics, (list, tuple, dict)):
        raise ValueError(f"compile: metrics must be a list of names or metric objects (or a dict "
                         f"per output), got {metrics!r}")
    if isinstance(metrics, dict):
        per_output = _per_output(metrics, names, "metrics", ())
    else:
        metrics = list(metrics or ())
        if metrics and len(names) > 1 and all(isinstance(m, (list, tuple)) for m in metrics):
            per_output = _per_output(metrics, names, "metrics", ())  # one list per output
        else:
            per_output = [metrics] * len(names)  # every output gets them (Keras 2's rule)
    per_output = [[m] if isinstance(m, str) else list(m or ()) for m in per_output]

    model.metric_specs = [list(entries) for entries in per_output]
    if len(names) == 1 and weights == [1.0]:
        compile_net(model, optimizer, chosen[0], per_output[0])  # exactly a Net's compile
        model.output_losses = chosen
        model.loss_weights = weights
        return
    model.optimizer = optimizers.get(optimizer)
    model.output_losses = chosen
    model.loss = chosen[0] if len(names) == 1 else list(chosen)
    model.loss_weights = weights
    named = []
    several = len(names) > 1
    for index, (name, entries) in enumerate(zip(names, per_output)):
        if several:
            named.append((f"{name}_loss", OutputLoss(model, index)))
        for entry in entries:
            metric = metrics_module.get(entry)
            if several and getattr(metric, "stateful", False):
                metric = type(metric).from_config(metric.get_config())  # its own counts per output
            label = entry if isinstance(entry, str) else metric.name
            named.append((f"{name}_{label}" if several else label,
                          OnOutput(metric, index) if several else metric))
    model.metrics = named
    model.compiled = True
    model._objective = None


def objective_for(model):
    """The objective of a compiled Model: a Net's for one output of weight 1, else per output."""
    if len(model.output_names) == 1 and getattr(model, "loss_weights", [1.0]) == [1.0]:
        return Objective(model, last=lambda: model.output_instance(0), fusable=model.output_fusable(0))
    return MultiObjective(model)


class MultiObjective:
    """``sum_k w_k * loss_k`` over the outputs, each loss computed by its own :class:`Objective`."""

    def __init__(self, model):
        self.net = model
        self.heads = [Objective(model, loss=loss, last=lambda k=k: model.output_instance(k),
                                fusable=model.output_fusable(k))
                      for k, loss in enumerate(model.output_losses)]
        self.weights = list(model.loss_weights)
        self.last_values = [0.0] * len(self.heads)
        self.last = None

    def value_and_gradient(self, outputs, y, sample_weight=None):
        """``(total loss, [gradient per output], [from pre-activation per output])``."""
        ys = y.arrays if isinstance(y, Rows) else [y]
        outputs = outputs if isinstance(outputs, list) else [outputs]
        total, grads, flags = 0.0, [], []
        for k, (head, weight) in enumerate(zip(self.heads, self.weights)):
            value, grad, flag = head.value_and_gradient(outputs[k], ys[k], sample_weight)
            self.last_values[k] = value
            total += weight * value
            grads.append(grad * grad.dtype.type(weight) if weight != 1 else grad)
            flags.append(flag)
        return total, grads, flags

    def backpropagate(self, x, y, weight=1.0, sample_weight=None):
        """Forward in training mode, the weighted losses, backward; returns ``(loss, outputs)``."""
        outputs, activity = forward_with_penalties(self.net, x, True, weight)
        value, grads, flags = self.value_and_gradient(outputs, y, sample_weight)
        if weight != 1:
            grads = [g * g.dtype.type(weight) for g in grads]
        self.net.backward(grads if len(grads) > 1 else grads[0], input_gradient=False,
                          preactivation=flags)
        return value + activity, outputs

    evaluate = Objective.evaluate


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


def _targets(model, y, count, what):
    ports = output_ports(model)
    arrays = by_position(y, list(model.output_names), what)
    prepared = []
    for port, name, array in zip(ports, model.output_names, arrays):
        label = f"{what}[{name!r}]" if len(ports) > 1 else what
        if array is None:
            raise ValueError(f"{label} is missing")
        prepared.append(as_targets(port, port.loss, array, count, label))
    # One output: its targets as they are, which is what a one-output objective takes.
    return Rows(prepared) if len(prepared) > 1 else prepared[0]


class StructuredArraySource(ArraySource):
    """Batches of several array-like inputs (each an :class:`ArraySource`) and their targets.

    An :class:`ArraySource` to the loop (validation splits, strategies), with :class:`Rows` batches.
    """

    def __init__(self, inputs, y, sample_weight, what="x"):  # noqa: D107 - not ArraySource's arguments
        self.inputs, self.y, self.sample_weight = inputs, y, sample_weight
        self.what = what
        self.count = inputs[0].count
        self.steps = inputs[0].steps
        self.in_memory = all(source.in_memory for source in inputs)

    @property
    def batch_size(self):
        return self.inputs[0].batch_size

    @batch_size.setter
    def batch_size(self, value):
        for source in self.inputs:
            source.batch_size = value

    def subset(self, rows, weighted=True):
        weights = None if (self.sample_weight is None or not weighted) else self.sample_weight[rows]
        return StructuredArraySource([s.subset(rows) for s in self.inputs],
                                     None if self.y is None else self.y[rows], weights, self.what)

    def load(self, key):
        x = Rows([source.load(key).x for source in self.inputs])
        y = None if self.y is None else self.y[key]
        weights = None if self.sample_weight is None else self.sample_weight[key]
        return Batch(x, y, weights)


class StructuredChecker:
    """Checks the batches a Sequence or generator yields for a model with several inputs/outputs."""

    def __init__(self, model, needs_targets):
        self.model, self.needs_targets = model, needs_targets
        self.class_weights = None

    def __call__(self, item, what):
        model = self.model
        if isinstance(item, tuple) and 1 <= len(item) <= 3:
            x, y, weights = (item + (None, None))[:3]
        else:
            x, y, weights = item, None, None
        try:
            arrays = by_position(x, list(model.input_names), f"{what}: x")
        except ValueError as error:
            raise DataError(str(error)) from None
        xs = Rows([input_batch(port, a, f"{what}: x[{name!r}]")
                   for port, name, a in zip(input_ports(model), model.input_names, arrays)])
        if not self.needs_targets:
            return Batch(xs, None, None)
        if y is None:
            raise DataError(f"{what}: yielded x without y; fit and evaluate need (x, y) or "
                            "(x, y, sample_weight)")
        try:
            ys = _targets(model, y, len(xs), f"{what} y")
        except DataError:
            raise
        except ValueError as error:
            raise DataError(str(error)) from None
        if weights is not None:
            weights = weight_vector(weights, len(xs), what)
        return Batch(xs, ys, weights)


def make_source(model, x, y=None, sample_weight=None, batch_size=None, needs_targets=True, what="x"):
    """The source of a model with several inputs or outputs (see :func:`.sources.make_source`)."""
    if x is None:
        raise ValueError(f"{what} is missing")
    if is_sequence(x) or is_iterator(x):
        kind = "Sequence" if is_sequence(x) else "generator"
        for name, value in (("y", y), ("sample_weight", sample_weight), ("batch_size", batch_size)):
            if value is not None:
                raise ValueError(f"{what} is a {kind}, which yields its own batches: do not pass "
                                 f"{name} (yield (x, y) or (x, y, sample_weight) batches instead)")
        checker = StructuredChecker(model, needs_targets)
        if kind == "Sequence":
            return SequenceSource(model, x, checker, what)
        return IteratorSource(x, checker, what)
    arrays = by_position(x, list(model.input_names), what)
    checked = [check_array_input(port, a, f"{what}[{name!r}]")
               for port, name, a in zip(input_ports(model), model.input_names, arrays)]
    counts = [len(a) for a in checked]
    if len(set(counts)) > 1:
        raise ValueError(f"{what}: the inputs have different numbers of samples "
                         f"{dict(zip(model.input_names, counts))}")
    batch_size = check_batch_size(batch_size or 32)
    inputs = [ArraySource(port, a, None, None, batch_size, what=what)
              for port, a in zip(input_ports(model), checked)]
    targets = weights = None
    if needs_targets:
        label = "y" if what == "x" else what.replace("x", "y")
        if y is None:
            raise ValueError(f"{label} is missing")
        targets = _targets(model, y, counts[0], label)
        if sample_weight is not None:
            sample_weight = _one_weight_vector(sample_weight, counts[0], what)
            weights = sample_weight
    return StructuredArraySource(inputs, targets, weights, what)


def _one_weight_vector(weights, count, what):
    if isinstance(weights, (dict, list)) and not np.ndim(weights) == 1:
        raise ValueError(f"{what}: sample_weight must be one weight per sample (N,) for every "
                         "output; per-output sample weights are not supported")
    return weight_vector(weights, count, f"{what}: sample_weight")


def one_batch(model, x, y, sample_weight):
    """``train_on_batch``'s ``(x, y, sample_weight)`` checked: Rows, Rows and a vector or None."""
    source = make_source(model, x, y, sample_weight, batch_size=None)
    batch = source.load(slice(0, source.count))
    return batch.x, batch.y, batch.sample_weight


def predict(model, x, batch_size=None, steps=None, out=None):
    """Outputs for ``x``: one array per output, each ``(N, *output_shape)``, in a list."""
    from .loop import DEFAULT_EVAL_BATCH, _inference_keys  # noqa: PLC0415
    from .prefetch import Loader  # noqa: PLC0415

    if out is not None:
        raise ValueError("predict: out= is for models with one output")
    source = make_source(model, x, batch_size=batch_size or (
        None if is_sequence(x) or is_iterator(x) else DEFAULT_EVAL_BATCH), needs_targets=False)
    keys = _inference_keys(source, model.rng, steps)
    parts = [[] for _ in model.output_names]
    with Loader(source) as loader:
        for x_batch, _, _ in loader.batches(keys):
            outputs = model.forward(x_batch, training=False)
            outputs = outputs if isinstance(outputs, list) else [outputs]
            for store, value in zip(parts, outputs):
                store.append(value)
    if not parts[0]:
        raise DataError(f"predict: {source.what} gave no batch")
    results = [np.concatenate(p) if len(p) > 1 else p[0] for p in parts]
    if len(results) == 1:
        return results[0]
    # The structure the outputs were given in, as Keras returns it: a dict by name, or a list.
    return dict(zip(model.output_names, results)) if model.output_structure == "dict" else results
