"""``compile``, ``fit``, ``evaluate``, ``predict`` and single-batch steps for :class:`~modularcnn.Net`.

These are functions of the network so that the training loop reads top to bottom in one place; ``Net``
exposes them as methods with the same arguments.
"""

import contextlib
import itertools
import math
import numbers
import time
import warnings

import numpy as np

from .. import execution, losses, metrics as metrics_module, optimizers, validation
from ..callbacks import Callback, CallbackList, History
from ..callbacks.progress import ProgressLogger
from ..errors import DataError
from .data import (
    as_inputs,
    as_targets,
    check_batch_size,
    check_validation_split,
    validation_split_indices,
)
from . import finite
from .interrupt import stop_on_interrupt
from .objective import objective_for, objective_last
from .penalties import optimizer_step, weight_penalty
from .prefetch import Loader
from .sources import (
    ArraySource,
    ClassWeights,
    IteratorSource,
    SequenceSource,
    apply_class_weights,
    is_iterator,
    is_sequence,
    make_source,
    weight_vector,
)
from . import structured
from .strategies import SingleProcess, choose_strategy, pool_of
from .strategies.local import LocalWorkers

DEFAULT_EVAL_BATCH = 256


def compile(net, optimizer="adam", loss="cross_entropy", metrics=("accuracy",)):
    """Choose the optimizer, loss and metrics (names or instances); see :meth:`Net.compile`."""
    if not net.layers:
        raise ValueError("compile: the network has no layers")
    if isinstance(metrics, str):
        metrics = (metrics,)
    if metrics is not None and not isinstance(metrics, (list, tuple)):
        raise ValueError(f"compile: metrics must be a list of names or metric objects, got {metrics!r}")
    # Everything is resolved before anything is assigned: a bad loss leaves the optimizer (and its
    # state) as it was.
    optimizer, loss = optimizers.get(optimizer), losses.get(loss)
    chosen = [(m, metrics_module.get(m)) for m in (metrics or ())]
    net.optimizer, net.loss = optimizer, loss
    net.metrics = [(m if isinstance(m, str) else metric.name, metric) for m, metric in chosen]
    net.compiled = True
    net._objective = None


def objective_of(net):
    """The network's :class:`Objective`, compiling it with the defaults first when needed."""
    if not net.compiled:
        net.compile()  # the defaults, through the network's own compile (a Model's is per output)
    if getattr(net, "_objective", None) is None or net._objective.last is not objective_last(net):
        net._objective = objective_for(net)
    return net._objective


_objective = objective_of  # the name the profiler imports


class _Totals:
    """Sample-weighted running means of the loss and metrics over an epoch; a stateful metric's
    figure is its latest ``result()`` (it counts across the batches itself)."""

    def __init__(self, names, stateful=()):
        self.names = ["loss"] + list(names)
        self.stateful = set(stateful)
        self.sums = dict.fromkeys(self.names, 0.0)
        self.count = 0

    def add(self, size, values):
        self.count += size
        for name, value in zip(self.names, values):
            if name in self.stateful:
                self.sums[name] = value
            else:
                self.sums[name] += value * size

    def means(self):
        return {name: self.sums[name] if name in self.stateful else self.sums[name] / max(self.count, 1)
                for name in self.names}


def _new_totals(net):
    """Fresh totals for an epoch or an evaluation, with the stateful metrics reset."""
    stateful = [name for name, metric in net.metrics if getattr(metric, "stateful", False)]
    for name, metric in net.metrics:
        if name in stateful:
            metric.reset_state()
    return _Totals((name for name, _ in net.metrics), stateful)


def _metric_values(net, y, outputs, accumulate=False):
    """Each metric's figure for a batch; with ``accumulate``, stateful metrics add the batch to
    their counts and give their figure so far."""
    values = []
    for _, metric in net.metrics:
        if accumulate and getattr(metric, "stateful", False):
            metric.update_state(y, outputs)
            values.append(float(metric.result()))
        else:
            values.append(float(metric(y, outputs)))
    return values


def train_step(net, objective, x, y, sample_weight=None):
    """One optimisation step on a prepared batch; returns ``(loss, outputs)``."""
    value, outputs = objective.backpropagate(x, y, sample_weight=sample_weight)
    value += optimizer_step(net, net.trainable_params(), net.trainable_grads())
    return value, outputs


class _Epochs:
    """The batch keys of each epoch, with Keras's ``steps_per_epoch`` meaning.

    Without ``steps_per_epoch`` an epoch is one pass over the source (reshuffled each time). With it,
    an epoch is that many batches of a pass that carries on across epochs; a new, reshuffled pass
    starts when one is used up. An iterator's batches are simply taken in turn.
    """

    def __init__(self, source, rng, shuffle, steps_per_epoch):
        self.source, self.rng, self.shuffle = source, rng, shuffle
        self.steps_per_epoch = steps_per_epoch
        self.left = []  # keys of the current pass not used yet

    @property
    def steps(self):
        return self.steps_per_epoch or self.source.steps

    def keys(self):
        if isinstance(self.source, IteratorSource):
            return range(self.steps_per_epoch) if self.steps_per_epoch else itertools.count()
        if self.steps_per_epoch is None:
            return self.source.plan(self.rng, self.shuffle)
        return self._continuing()

    def _continuing(self):
        # A generator: the next pass is drawn (from the seeded generator, in this thread) only when
        # the loader asks for its first batch.
        for _ in range(self.steps_per_epoch):
            if not self.left:
                self.left = list(self.source.plan(self.rng, self.shuffle))
                self.left.reverse()
            yield self.left.pop()


def _check_steps(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def _check_shuffle(shuffle):
    if shuffle not in (True, False, "batch"):
        raise ValueError(f"shuffle must be True, False or 'batch', got {shuffle!r}")
    return shuffle


def _validation_source(net, validation_data, batch_size):
    """The source for ``validation_data``: ``(x, y)``, ``(x, y, sample_weight)``, a Sequence or a
    generator. Validation is weighted only by weights it carries itself (never by ``class_weight``)."""
    if is_sequence(validation_data) or is_iterator(validation_data):
        return make_source(net, validation_data, what="validation data")
    try:
        parts = tuple(validation_data)
    except TypeError:
        parts = ()
    if len(parts) not in (2, 3):
        raise ValueError("validation_data must be (x_val, y_val), (x_val, y_val, sample_weight), a "
                         f"Sequence or a generator, got {type(validation_data).__name__}")
    x_val, y_val, weights = (parts + (None,))[:3]
    return make_source(net, x_val, y_val, weights, batch_size, what="validation x")


def fit(net, x, y=None, epochs=1, batch_size=None, validation_split=0.0, validation_data=None,
        shuffle=True, callbacks=None, verbose=1, initial_epoch=0, augment=None, workers="auto",
        sample_weight=None, class_weight=None, steps_per_epoch=None, validation_steps=None,
        validation_batch_size=None, strategy=None):
    """Train ``net``; see :meth:`Net.fit`. Returns the :class:`~modularcnn.callbacks.History`."""
    objective_of(net)
    epochs = validation.non_negative_int(epochs, "epochs", "Net.fit")
    initial_epoch = validation.non_negative_int(initial_epoch, "initial_epoch", "Net.fit")
    if batch_size is not None:
        batch_size = check_batch_size(batch_size)
    validation_split = check_validation_split(validation_split)
    shuffle = _check_shuffle(shuffle)
    steps_per_epoch = _check_steps(steps_per_epoch, "steps_per_epoch")
    validation_steps = _check_steps(validation_steps, "validation_steps")
    verbose = validation.integer(verbose, "verbose", "Net.fit", minimum=0, maximum=2)
    user_callbacks = callback_list(callbacks)
    if augment is not None and not callable(augment):
        raise ValueError(f"augment must be callable as augment(x_batch, rng=...), got {augment!r}")
    if augment is not None and len(getattr(net, "input_names", ())) > 1:
        raise ValueError("augment= takes one input batch; this model has several inputs: augment "
                         "inside a Sequence instead")
    if sample_weight is not None and class_weight is not None:
        raise ValueError("give sample_weight or class_weight, not both (as in Keras): multiply the "
                         "class weights into sample_weight yourself to combine them")
    class_weights = None if class_weight is None else ClassWeights(net, class_weight)
    source = make_source(net, x, y, sample_weight, batch_size)
    val_batch = validation_batch_size or max(batch_size or 32, DEFAULT_EVAL_BATCH)
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_split or validation_data, not both")
        val_source = _validation_source(net, validation_data, val_batch)
    elif validation_split:
        if not isinstance(source, ArraySource):
            raise ValueError("validation_split needs arrays; for a Sequence or generator give "
                             "validation_data")
        train_idx, val_idx = validation_split_indices(source.y, validation_split, net.rng)
        # Two views of the same x: a memmap or HDF5 dataset is not read, let alone copied.
        source, val_source = source.subset(train_idx), source.subset(val_idx)
        val_source.batch_size = check_batch_size(val_batch)
        val_source.steps = -(-val_source.count // val_source.batch_size)
    else:
        # No draw from the generator: fit(epochs=2) must consume it exactly as fit(1) twice does.
        val_source = None
    if class_weights is not None:
        apply_class_weights(source, class_weights)

    epochs_plan = _Epochs(source, net.rng, shuffle, steps_per_epoch)
    steps = epochs_plan.steps
    arrays = isinstance(source, ArraySource)
    if strategy is None and workers == "auto" and (sample_weight is not None or class_weights is not None):
        workers = 1  # the data-parallel workers do not weigh samples yet
    total_steps = (steps or 0) * (epochs - initial_epoch)
    if arrays:
        strategy = choose_strategy(net, strategy, workers, min(source.batch_size, source.count),
                                   total_steps)
    elif strategy is not None:
        # Named now, so that an MPI rank knows before the first batch whether it is the chief.
        strategy = choose_strategy(net, strategy, workers, 1, total_steps)
    chief = getattr(strategy, "is_chief", True)
    if not chief:
        # One progress bar per job and one writer of each file: MPI ranks other than 0 train
        # silently and skip the callbacks that write (the others see the same logs on every rank,
        # so EarlyStopping and the like decide the same everywhere).
        verbose = 0
        user_callbacks = [callback for callback in user_callbacks if not callback.writes_files]
    history = History()
    progress = [ProgressLogger(verbose)] if verbose else []
    # What every epoch logs, so that callbacks can refuse an unknown monitor before training starts.
    logged = ["loss"] + [name for name, _ in net.metrics]
    logged += [f"val_{name}" for name in logged] if val_source is not None else []
    params = {"epochs": epochs, "steps": steps, "batch_size": batch_size or (32 if arrays else None),
              "samples": source.count, "verbose": verbose, "do_validation": val_source is not None,
              "metrics": logged + ["lr"]}
    hooks = CallbackList([history] + user_callbacks + progress, model=net, params=params)
    net.history = history
    net.stop_training = False

    with contextlib.ExitStack() as stack:
        interrupt = stack.enter_context(stop_on_interrupt())
        loader = stack.enter_context(Loader(source))
        step_function = None
        if arrays:
            step_function = stack.enter_context(
                strategy.open(net, min(source.batch_size, source.count), source.y[:1]))
        hooks.call("on_train_begin", None)
        first_step, diverged = True, False
        # A callback that restored a backup (BackupAndRestore) says which epoch comes next.
        resumed = [c.resumes_at for c in hooks.callbacks if getattr(c, "resumes_at", None) is not None]
        initial_epoch = max([initial_epoch] + resumed)
        for epoch in range(initial_epoch, epochs):
            hooks.call("on_epoch_begin", epoch, None)
            if isinstance(source, SequenceSource) and hasattr(source.sequence, "on_epoch_begin"):
                source.sequence.on_epoch_begin()
            totals = _new_totals(net)
            done = 0
            for step, batch in enumerate(loader.batches(epochs_plan.keys())):
                x_batch, y_batch, weights = batch
                if step_function is None:
                    # A Sequence's or generator's batch size and targets are known only now.
                    strategy = choose_strategy(net, strategy, workers, len(x_batch), total_steps)
                    step_function = stack.enter_context(strategy.open(net, len(x_batch), y_batch[:1]))
                if augment is not None:
                    # Fresh random transforms every time a sample is seen, from the seeded generator.
                    x_batch = np.asarray(augment(x_batch, rng=net.rng), dtype=net.dtype)
                hooks.call("on_train_batch_begin", step, None)
                if first_step:
                    # Nothing learnt yet: a non-finite step is the data's, refused before the
                    # optimizer runs (see modularcnn.training.finite).
                    value, outputs = finite.checked_step(step_function, net, "Net.fit", x_batch,
                                                         y_batch, weights)
                    first_step = False
                else:
                    value, outputs = step_function(x_batch, y_batch, weights)
                if not (diverged or math.isfinite(value)):
                    diverged = True  # as in Keras, training goes on; TerminateOnNaN stops it
                    warnings.warn(f"Net.fit: the loss became {value} at epoch {epoch + 1}, batch "
                                  f"{step + 1}, so the weights are no longer finite; lower the "
                                  "learning rate, or stop such a run with callbacks.TerminateOnNaN()",
                                  RuntimeWarning, stacklevel=3)
                totals.add(len(x_batch), [value] + _metric_values(net, y_batch, outputs, True))
                done = step + 1
                hooks.call("on_train_batch_end", step, totals.means())
                if interrupt["interrupted"] or net.stop_training:
                    break
            if interrupt["interrupted"]:
                history.interrupted = True
                if chief:
                    print(f"\nInterrupted: stopped after batch {done}/{steps or '?'} of epoch "
                          f"{epoch + 1}; the weights so far are kept.", flush=True)
                break
            if isinstance(source, IteratorSource) and (done == 0 or (steps and done < steps)):
                if done == 0 and epoch == initial_epoch:
                    raise DataError("x: the generator yielded no batch")
                warnings.warn(f"the generator ran out of data after {source.taken} batches; training "
                              f"stops (it must give steps_per_epoch * epochs = "
                              f"{(steps or '?')} * {epochs} batches)", UserWarning, stacklevel=3)
                net.stop_training = True
                if done == 0:
                    break
            logs = totals.means()
            if val_source is not None:
                # The callbacks see validation as an evaluate: on_test_begin ... on_test_end.
                val_logs = _evaluate_source(net, objective_of(net), val_source, validation_steps,
                                            strategy, hooks=hooks)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            logs["lr"] = float(net.optimizer.current_learning_rate)
            if isinstance(source, SequenceSource):
                source.sequence.on_epoch_end()
                loader.epoch_ended()
            hooks.call("on_epoch_end", epoch, logs)
            if net.stop_training:
                break
        hooks.call("on_train_end", None)
    return history


def callback_list(callbacks, where="Net.fit"):
    """A ``callbacks`` argument as a list: None, one Callback (as Keras accepts), or a list of them."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        validation.fail(where, "callbacks", "a Callback or a list of Callback instances", callbacks)
    for callback in callbacks:
        if not isinstance(callback, Callback):
            validation.fail(where, "callbacks", "a list of Callback instances (one item is not)",
                            callback)
    return list(callbacks)


def _inference_keys(source, rng, steps):
    """The batches evaluate and predict take, in order: the first ``steps`` (all when None)."""
    if isinstance(source, IteratorSource):
        return range(steps) if steps else itertools.count()
    return source.plan(rng, False)[:steps]


def _evaluate_source(net, objective, source, steps=None, strategy=None, hooks=None):
    """Loss (weighted by the source's sample weights) and metrics over ``source``, in inference mode
    (each batch split across the strategy's participants when they each hold the network: MPI).
    ``hooks`` (a CallbackList) get ``on_test_begin``/``on_test_batch_*``/``on_test_end``."""
    evaluate_batch = (strategy or SingleProcess()).evaluate_batch
    hooks = hooks or CallbackList([])
    totals = _new_totals(net)
    keys = _inference_keys(source, net.rng, steps)
    hooks.call("on_test_begin", None)
    with Loader(source) as loader:
        for step, (x_batch, y_batch, weights) in enumerate(loader.batches(keys)):
            hooks.call("on_test_batch_begin", step, None)
            value, outputs = evaluate_batch(net, objective, x_batch, y_batch, weights)
            totals.add(len(x_batch), [value] + _metric_values(net, y_batch, outputs, True))
            hooks.call("on_test_batch_end", step, totals.means())
    if totals.count == 0:
        raise DataError(f"{source.what}: no batch to evaluate on")
    logs = totals.means()
    logs["loss"] += weight_penalty(net)  # once: it is the same for every batch
    hooks.call("on_test_end", dict(logs))
    return logs


def check_verbose(verbose, where):
    """``verbose`` as 0, 1 or 2 (Keras's ``"auto"`` is 1)."""
    if verbose == "auto":
        return 1
    return validation.integer(verbose, "verbose", where, minimum=0, maximum=2)


def evaluate(net, x, y=None, batch_size=None, verbose=0, sample_weight=None, steps=None,
             callbacks=None):
    """Loss and every metric over ``(x, y)`` in inference mode: ``{"loss": ..., "accuracy": ...}``.

    ``x`` may be an array, memmap or HDF5 dataset (with ``y``), a Sequence or a generator; at most a
    few batches are in memory at once. ``sample_weight`` weighs the loss as in ``fit``; ``callbacks``
    get the ``on_test_*`` hooks.
    """
    objective = objective_of(net)
    if batch_size is not None:
        batch_size = check_batch_size(batch_size, "Net.evaluate")
    verbose = check_verbose(verbose, "Net.evaluate")
    steps = _check_steps(steps, "steps")
    hooks = CallbackList(callback_list(callbacks, "Net.evaluate"), model=net,
                         params={"steps": steps, "verbose": verbose})
    source = make_source(net, x, y, sample_weight, batch_size or _default_batch(x))
    result = _evaluate_source(net, objective, source, steps, hooks=hooks)
    if verbose:
        print(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()))
    return result


def _check_out(net, out, count):
    shape = (count,) + tuple(net.output_shape) if count is not None else None
    if not isinstance(out, np.ndarray) or np.dtype(out.dtype).kind != "f" or not out.flags.writeable:
        raise ValueError("predict: out must be a writable floating-point array (e.g. a np.memmap), "
                         f"got {type(out).__name__}")
    if tuple(out.shape[1:]) != tuple(net.output_shape) or (shape is not None and out.shape[0] < count):
        wanted = shape or ("n",) + tuple(net.output_shape)
        raise ValueError(f"predict: out must have shape {wanted}, got {out.shape}")
    return out


class _NoHooks:
    """The hook list of a ``predict`` without callbacks: every hook does nothing."""

    def call(self, hook, *args):
        pass


_NO_HOOKS = _NoHooks()


def _default_batch(x):
    """The batch size of evaluate and predict when none is given: arrays get
    ``DEFAULT_EVAL_BATCH``; a Sequence or generator makes its own batches (None)."""
    if isinstance(x, np.ndarray):  # the common case, before the duck-typing checks
        return DEFAULT_EVAL_BATCH
    return None if is_sequence(x) or is_iterator(x) else DEFAULT_EVAL_BATCH


def predict(net, x, batch_size=None, steps=None, out=None, verbose=0, callbacks=None):
    """Outputs for ``x`` in inference mode, ``(N, *output_shape)``: probabilities after a softmax.

    ``x`` may be an array, memmap, HDF5 dataset, Sequence or generator (yielding ``x`` or ``(x, ...)``).
    The result is written into one preallocated array, or into ``out`` (e.g. a ``np.memmap`` for
    results larger than memory), and only a few input batches are held at once. ``callbacks`` get
    the ``on_predict_*`` hooks; ``verbose`` 1 or 2 prints one line when done.
    """
    if batch_size is not None:
        batch_size = check_batch_size(batch_size, "Net.predict")
    steps = _check_steps(steps, "steps")
    verbose = check_verbose(verbose, "Net.predict")
    # Without callbacks no hook list is made (a one-image predict calls four hooks).
    hooks = _NO_HOOKS if callbacks is None else CallbackList(
        callback_list(callbacks, "Net.predict"), model=net, params={"steps": steps, "verbose": verbose})
    started = time.perf_counter()
    if getattr(net, "structured", False):
        hooks.call("on_predict_begin", None)
        result = structured.predict(net, x, batch_size=batch_size, steps=steps, out=out)
        hooks.call("on_predict_end", None)
        return result
    result, batches = _predict_arrays(net, x, batch_size, steps, out, hooks)
    hooks.call("on_predict_end", None)
    if verbose:
        print(f"{batches}/{batches} batches - {time.perf_counter() - started:.1f}s - "
              f"{len(result)} samples predicted", flush=True)
    return result


def _predict_arrays(net, x, batch_size, steps, out, hooks):
    """:func:`predict` of a one-output network: ``(outputs, batches)``."""
    source = make_source(net, x, batch_size=batch_size or _default_batch(x), needs_targets=False)
    hooks.call("on_predict_begin", None)  # once the data is known to be usable
    count = source.count
    if count is not None and steps is not None:
        count = min(count, steps * source.batch_size)
    keys = _inference_keys(source, net.rng, steps)
    if out is not None:
        result = _check_out(net, out, count)
    elif count is not None:
        result = np.empty((count,) + tuple(net.output_shape), dtype=net.dtype)
    else:
        result = None  # sized by the first batch, grown by doubling if needed
    filled = 0
    batches = 0
    with Loader(source) as loader:
        for step, (x_batch, _, _) in enumerate(loader.batches(keys)):
            hooks.call("on_predict_batch_begin", step, None)
            outputs = _inference_outputs(net, x_batch)
            hooks.call("on_predict_batch_end", step, {"outputs": outputs})
            batches = step + 1
            rows = len(outputs)
            if result is None:
                result = np.empty((rows * len(keys) if hasattr(keys, "__len__") else rows * 64,)
                                  + tuple(net.output_shape), dtype=net.dtype)
            if filled + rows > len(result):
                if out is not None:
                    raise DataError(f"predict: out has room for {len(out)} rows, but {source.what} "
                                    f"gives more (at least {filled + rows})")
                grown = np.empty((max(2 * len(result), filled + rows),) + result.shape[1:], result.dtype)
                grown[:filled] = result[:filled]
                result = grown
            result[filled:filled + rows] = outputs
            filled += rows
    if result is None:
        raise DataError(f"predict: {source.what} gave no batch")
    return (result if filled == len(result) else result[:filled]), batches


def _inference_outputs(net, x_batch):
    """``net.forward(x_batch, training=False)``, a slice of rows at a time when the batch is large
    (:func:`modularcnn.execution.inference_rows`): faster, and less memory held."""
    rows = execution.inference_rows(net, len(x_batch))
    if rows >= len(x_batch):
        return net.forward(x_batch, training=False)
    outputs = np.empty((len(x_batch), *net.output_shape), net.dtype)   # as predict's result
    for start in range(0, len(x_batch), rows):
        outputs[start:start + rows] = net.forward(x_batch[start:start + rows], training=False)
    return outputs


def predict_classes(net, x, batch_size=None):
    """Predicted class per sample: argmax of the outputs, or ``output > 0.5`` for one sigmoid unit."""
    outputs = predict(net, x, batch_size)
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        return (outputs[:, 0] > 0.5).astype(np.intp)
    return outputs.argmax(axis=-1)


def train_on_batch(net, x, y, sample_weight=None, class_weight=None):
    """One optimisation step on ``(x, y)``; returns ``{"loss": ..., metric: ...}`` for that batch.

    It runs in the network's worker pool when an earlier parallel ``fit`` left one running (and the
    batch has a row for each worker, and no weights), else in this process.
    """
    objective_of(net)
    if sample_weight is not None and class_weight is not None:
        raise ValueError("give sample_weight or class_weight, not both (as in Keras)")
    if getattr(net, "structured", False):
        if class_weight is not None:
            ClassWeights(net, class_weight)  # refuses, saying why
        x, y, sample_weight = structured.one_batch(net, x, y, sample_weight)
    else:
        x = as_inputs(net, x)
        y = as_targets(net, net.loss, y, len(x))
    if sample_weight is not None:
        sample_weight = weight_vector(sample_weight, len(x), "train_on_batch")
    elif class_weight is not None:
        sample_weight = ClassWeights(net, class_weight)(y)
    pool = pool_of(net)
    parallel = pool is not None and len(x) >= pool.size and sample_weight is None
    strategy = LocalWorkers(pool.size) if parallel else SingleProcess()
    with stop_on_interrupt(), strategy.open(net, len(x), y[:1]) as step:
        # Every call is checked: each is a step of its own whose caller decides what follows.
        value, outputs = finite.checked_step(step, net, "Net.train_on_batch", x, y, sample_weight)
    return dict(zip(["loss"] + [name for name, _ in net.metrics],
                    [value] + _metric_values(net, y, outputs)))


def test_on_batch(net, x, y, sample_weight=None):
    """Loss and metrics on one batch in inference mode, without updating anything."""
    if getattr(net, "structured", False):
        x, y, sample_weight = structured.one_batch(net, x, y, sample_weight)
        return evaluate(net, x.arrays, y.arrays if hasattr(y, "arrays") else y, batch_size=len(x),
                        sample_weight=sample_weight)
    x = as_inputs(net, x)  # a clear error for what is not a batch, before len() is taken
    return evaluate(net, x, y, batch_size=len(x), sample_weight=sample_weight)
