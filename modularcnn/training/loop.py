"""``compile``, ``fit``, ``evaluate``, ``predict`` and single-batch steps for :class:`~modularcnn.Net`.

These are functions of the network so that the training loop reads top to bottom in one place; ``Net``
exposes them as methods with the same arguments.
"""

import contextlib

import numpy as np

from .. import losses, metrics as metrics_module, optimizers, validation
from ..callbacks import Callback, CallbackList, History
from ..callbacks.progress import ProgressLogger
from .data import (
    as_inputs,
    as_targets,
    check_batch_size,
    check_validation_split,
    validation_split_indices,
)
from .interrupt import stop_on_interrupt
from .objective import Objective
from .strategies import SingleProcess, choose_strategy, pool_of
from .strategies.local import LocalWorkers

DEFAULT_EVAL_BATCH = 256


def compile(net, optimizer="adam", loss="cross_entropy", metrics=("accuracy",)):
    """Choose the optimizer, loss and metrics (names or instances); see :meth:`Net.compile`."""
    if not net.layers:
        raise ValueError("compile: the network has no layers")
    if isinstance(metrics, str):
        metrics = (metrics,)
    net.optimizer = optimizers.get(optimizer)
    net.loss = losses.get(loss)
    chosen = [(m, metrics_module.get(m)) for m in (metrics or ())]
    net.metrics = [(m if isinstance(m, str) else metric.name, metric) for m, metric in chosen]
    net.compiled = True
    net._objective = None


def objective_of(net):
    """The network's :class:`Objective`, compiling it with the defaults first when needed."""
    if not net.compiled:
        compile(net)
    if getattr(net, "_objective", None) is None or net._objective.last is not net.layers[-1]:
        net._objective = Objective(net)
    return net._objective


_objective = objective_of  # the name the profiler imports


class _Totals:
    """Sample-weighted running means of the loss and metrics over an epoch."""

    def __init__(self, names):
        self.names = ["loss"] + list(names)
        self.sums = dict.fromkeys(self.names, 0.0)
        self.count = 0

    def add(self, size, values):
        self.count += size
        for name, value in zip(self.names, values):
            self.sums[name] += value * size

    def means(self):
        return {name: self.sums[name] / max(self.count, 1) for name in self.names}


def _metric_values(net, y, outputs):
    return [float(metric(y, outputs)) for _, metric in net.metrics]


def fit(net, x, y, epochs=1, batch_size=32, validation_split=0.0, validation_data=None, shuffle=True,
        callbacks=None, verbose=1, initial_epoch=0, augment=None, workers="auto", strategy=None):
    """Train ``net``; see :meth:`Net.fit`. Returns the :class:`~modularcnn.callbacks.History`."""
    objective_of(net)
    epochs = validation.non_negative_int(epochs, "epochs", "Net.fit")
    initial_epoch = validation.non_negative_int(initial_epoch, "initial_epoch", "Net.fit")
    batch_size = check_batch_size(batch_size)
    validation_split = check_validation_split(validation_split)
    verbose = validation.integer(verbose, "verbose", "Net.fit", minimum=0, maximum=2)
    shuffle = validation.boolean(shuffle, "shuffle", "Net.fit")
    user_callbacks = callback_list(callbacks)
    if augment is not None and not callable(augment):
        raise ValueError(f"augment must be callable as augment(x_batch, rng=...), got {augment!r}")
    x = as_inputs(net, x)
    y = as_targets(net, net.loss, y, len(x))
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_split or validation_data, not both")
        try:
            x_val, y_val = validation_data
        except (TypeError, ValueError):
            raise ValueError("validation_data must be a pair (x_val, y_val)") from None
        x_val = as_inputs(net, x_val, "validation x")
        y_val = as_targets(net, net.loss, y_val, len(x_val), "validation y")
    elif validation_split:
        train_idx, val_idx = validation_split_indices(y, validation_split, net.rng)
        x, x_val, y, y_val = x[train_idx], x[val_idx], y[train_idx], y[val_idx]
    else:
        # No draw from the generator: fit(epochs=2) must consume it exactly as fit(1) twice does.
        x_val = y_val = None

    count = len(x)
    steps = -(-count // batch_size)
    largest_batch = min(batch_size, count)
    strategy = choose_strategy(net, strategy, workers, largest_batch, steps * (epochs - initial_epoch))
    if not getattr(strategy, "is_chief", True):
        verbose = 0  # one progress bar per job: MPI ranks other than 0 train silently
    history = History()
    progress = [ProgressLogger(verbose)] if verbose else []
    logged = ["loss"] + [name for name, _ in net.metrics]
    logged += [f"val_{name}" for name in logged] if x_val is not None else []
    params = {"epochs": epochs, "steps": steps, "batch_size": batch_size, "samples": count,
              "verbose": verbose, "do_validation": x_val is not None, "metrics": logged + ["lr"]}
    hooks = CallbackList([history] + user_callbacks + progress, model=net, params=params)
    net.history = history
    net.stop_training = False

    with contextlib.ExitStack() as stack:
        interrupt = stack.enter_context(stop_on_interrupt())
        step_function = stack.enter_context(strategy.open(net, largest_batch, y[:1]))
        hooks.call("on_train_begin", None)
        for epoch in range(initial_epoch, epochs):
            hooks.call("on_epoch_begin", epoch, None)
            order = net.rng.permutation(count) if shuffle else None
            totals = _Totals(name for name, _ in net.metrics)
            for step in range(steps):
                batch = slice(step * batch_size, (step + 1) * batch_size)
                index = order[batch] if order is not None else batch
                x_batch, y_batch = x[index], y[index]
                if augment is not None:
                    # Fresh random transforms every time a sample is seen, from the seeded generator.
                    x_batch = np.asarray(augment(x_batch, rng=net.rng), dtype=net.dtype)
                hooks.call("on_train_batch_begin", step, None)
                value, outputs = step_function(x_batch, y_batch)
                totals.add(len(x_batch), [value] + _metric_values(net, y_batch, outputs))
                hooks.call("on_train_batch_end", step, totals.means())
                if interrupt["interrupted"] or net.stop_training:
                    break
            if interrupt["interrupted"]:
                history.interrupted = True
                print(f"\nInterrupted: stopped after batch {step + 1}/{steps} of epoch {epoch + 1}; "
                      "the weights so far are kept.", flush=True)
                break
            logs = totals.means()
            if x_val is not None:
                val_logs = evaluate(net, x_val, y_val, batch_size=max(batch_size, DEFAULT_EVAL_BATCH),
                                    _prepared=True)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            logs["lr"] = float(net.optimizer.current_learning_rate)
            hooks.call("on_epoch_end", epoch, logs)
            if net.stop_training:
                break
        hooks.call("on_train_end", None)
    return history


def callback_list(callbacks):
    """``fit``'s ``callbacks`` argument as a list: None, one Callback (as Keras accepts), or a list of them."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        validation.fail("Net.fit", "callbacks", "a Callback or a list of Callback instances", callbacks)
    for callback in callbacks:
        if not isinstance(callback, Callback):
            validation.fail("Net.fit", "callbacks", "a list of Callback instances (one item is not)",
                            callback)
    return list(callbacks)


def _batches(count, batch_size):
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


def evaluate(net, x, y, batch_size=None, verbose=0, _prepared=False):
    """Loss and every metric over ``(x, y)`` in inference mode: ``{"loss": ..., "accuracy": ...}``."""
    objective = objective_of(net)
    batch_size = check_batch_size(DEFAULT_EVAL_BATCH if batch_size is None else batch_size,
                                  "Net.evaluate")
    verbose = validation.integer(verbose, "verbose", "Net.evaluate", minimum=0, maximum=2)
    if not _prepared:
        x = as_inputs(net, x)
        y = as_targets(net, net.loss, y, len(x))
    totals = _Totals(name for name, _ in net.metrics)
    for batch in _batches(len(x), batch_size):
        outputs = net.forward(x[batch], training=False)
        value, _, _ = objective.value_and_gradient(outputs, y[batch])
        totals.add(batch.stop - batch.start, [value] + _metric_values(net, y[batch], outputs))
    result = totals.means()
    if verbose:
        print(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()))
    return result


def predict(net, x, batch_size=None):
    """Outputs for ``x`` in inference mode, ``(N, *output_shape)``: probabilities after a softmax."""
    batch_size = check_batch_size(DEFAULT_EVAL_BATCH if batch_size is None else batch_size,
                                  "Net.predict")
    x = as_inputs(net, x)
    result = np.empty((len(x),) + tuple(net.output_shape), dtype=net.dtype)
    for batch in _batches(len(x), batch_size):
        result[batch] = net.forward(x[batch], training=False)
    return result


def predict_classes(net, x, batch_size=None):
    """Predicted class per sample: argmax of the outputs, or ``output > 0.5`` for one sigmoid unit."""
    outputs = predict(net, x, batch_size)
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        return (outputs[:, 0] > 0.5).astype(np.intp)
    return outputs.argmax(axis=-1)


def train_on_batch(net, x, y):
    """One optimisation step on ``(x, y)``; returns ``{"loss": ..., metric: ...}`` for that batch.

    It runs in the network's worker pool when an earlier parallel ``fit`` left one running (and the
    batch has a row for each worker), else in this process.
    """
    objective_of(net)
    x = as_inputs(net, x)
    y = as_targets(net, net.loss, y, len(x))
    pool = pool_of(net)
    strategy = LocalWorkers(pool.size) if pool is not None and len(x) >= pool.size else SingleProcess()
    with stop_on_interrupt(), strategy.open(net, len(x), y[:1]) as step:
        value, outputs = step(x, y)
    return dict(zip(["loss"] + [name for name, _ in net.metrics],
                    [value] + _metric_values(net, y, outputs)))


def test_on_batch(net, x, y):
    """Loss and metrics on one batch in inference mode, without updating anything."""
    x = as_inputs(net, x)
    return evaluate(net, x, as_targets(net, _objective(net).loss, y, len(x)), batch_size=len(x),
                    _prepared=True)
