"""Per-step timing of training steps: where does a batch's time go?

``profile(net, x, y)`` runs real training steps (forward, loss, backward, optimizer update) on a few
batches through the network's execution plan — the steps ``fit`` runs (:mod:`modularcnn.execution`),
a fused step as one row — timing each step's forward and backward pass separately, and prints a
table like the breakdowns people publish for from-scratch CNNs. The network is left as it was:
weights, optimizer state and random generator are restored afterwards.
"""

import copy
import time

import numpy as np

from tabulate import tabulate

from .execution import options_for, plan_for, step_kernel, step_layers
from .layers.stack import LayerStack
from .training.data import as_inputs, as_targets, check_batch_size
from .training.loop import _objective


class _StepTimer:
    """The timer a :class:`~modularcnn.layers.stack.LayerStack` calls around each step's passes:
    adds the seconds to the step's ``forward`` or ``backward`` total while ``counting``."""

    def __init__(self, steps):
        self.seconds = {(id(step), phase): 0.0 for step in steps for phase in ("forward", "backward")}
        self.counting = False

    def __call__(self, step, phase, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        if self.counting:
            self.seconds[id(step), phase] += time.perf_counter() - start
        return result


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def _strategy_note(net, batch_size, steps):
    """Which strategy ``fit`` would train with for ``steps`` batches (the profile runs here)."""
    from .training.strategies import choose_strategy  # noqa: PLC0415 - the policy, on request

    try:
        strategy = choose_strategy(net, batch_size=batch_size, steps=steps)
    except ValueError as error:
        return f"fit would refuse its workers: {error}"
    return (f"fit with {steps} batches would train with {strategy!r}; its workers run the same plan "
            "on their rows, timed here in one process" if getattr(strategy, "workers", 0)
            else f"fit with {steps} batches would train in this process, with this plan")


def profile(net, x, y, batches=20, batch_size=64, warmup=2, print_fn=print):
    """Time ``batches`` training steps layer by layer; returns the table's rows as dicts.

    Parameters
    ----------
    x, y : arrays
        Training data as for ``fit``; the first ``(warmup + batches) * batch_size`` samples are used
        (cycling if there are fewer).
    batches : int
        Steps that are timed, after ``warmup`` untimed ones (first calls allocate buffers).

    Returns
    -------
    list of dict
        One per step of the execution plan (a layer, or a fused step running several), plus ``loss``
        and ``optimizer`` rows: ``name`` (the layers' names joined by " + "), ``type`` (the step's
        class), ``layers`` (their names), ``kernel`` (what runs), ``forward_ms`` and ``backward_ms``
        (mean per batch), ``share`` (fraction of the whole step).
    """
    batch_size = check_batch_size(batch_size)
    if batches < 1:
        raise ValueError(f"batches must be at least 1, got {batches!r}")
    if hasattr(net, "graph"):
        rows, count = _profile_graph(net, x, y, batches, batch_size, warmup)
        return _report(rows, net, batches, batch_size, count, print_fn)
    objective = _objective(net)
    x = as_inputs(net, x)
    y = as_targets(net, net.loss, y, len(x))
    saved_weights = net.get_weights()
    saved_rng = copy.deepcopy(net.rng.bit_generator.state)
    optimizer = copy.deepcopy(net.optimizer)  # the model's own optimizer state stays untouched

    plan = plan_for(net)
    stack = LayerStack(net.layers)
    timer = _StepTimer(plan.steps)
    loss_time = update_time = 0.0
    try:
        for step in range(warmup + batches):
            timed = timer.counting = step >= warmup
            index = [(step * batch_size + i) % len(x) for i in range(batch_size)]
            out = stack.forward(x[index], training=True, steps=plan.steps, timer=timer)
            (value, grad, from_preactivation), seconds = _timed(
                objective.value_and_gradient, out, y[index])
            loss_time += seconds * timed
            stack.backward(grad, steps=plan.steps, input_grad_needed=False,
                           preactivation=from_preactivation, timer=timer)
            _, seconds = _timed(optimizer.apply, net.trainable_params(), net.trainable_grads())
            update_time += seconds * timed
    finally:
        net.set_weights(saved_weights)
        net.rng.bit_generator.state = saved_rng

    rows = []
    for step in plan.steps:
        names = [layer.name for layer in step_layers(step)]
        rows.append({"name": " + ".join(names), "type": type(step).__name__, "layers": names,
                     "kernel": step_kernel(step),
                     "forward_ms": 1e3 * timer.seconds[id(step), "forward"] / batches,
                     "backward_ms": 1e3 * timer.seconds[id(step), "backward"] / batches})
    rows.append({"name": "loss", "type": type(net.loss).__name__, "forward_ms": 1e3 * loss_time / batches,
                 "backward_ms": 0.0})
    rows.append({"name": "optimizer", "type": type(optimizer).__name__, "forward_ms": 0.0,
                 "backward_ms": 1e3 * update_time / batches})
    return _report(rows, net, batches, batch_size, len(x), print_fn)


class _GraphTimer:
    """The timer a graph's executor calls around each step: seconds per step *kind* — its class and
    the layers it runs — so that the calls of a shared layer add up in one row."""

    def __init__(self):
        self.seconds, self.steps = {}, {}
        self.counting = False

    def __call__(self, step, phase, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        if self.counting:
            key = (type(step).__name__, tuple(layer.name for layer in step_layers(step)))
            self.steps.setdefault(key, step)
            totals = self.seconds.setdefault(key, {"forward": 0.0, "backward": 0.0})
            totals[phase] += time.perf_counter() - start
        return result


def _profile_graph(model, x, y, batches, batch_size, warmup):
    """The rows of :func:`profile` for a graph (``Model``): one per step kind its executor runs (a
    chain's plan steps, fused ones included, and merge layers), a shared layer's calls summed."""
    from .training.sources import make_source  # noqa: PLC0415 - the sources, on request

    objective = _objective(model)
    source = make_source(model, x, y, batch_size=batch_size)
    saved_weights = model.get_weights()
    saved_rng = copy.deepcopy(model.rng.bit_generator.state)
    optimizer = copy.deepcopy(model.optimizer)
    executor = model._executor
    timer = executor.timer = _GraphTimer()
    loss_time = update_time = 0.0
    try:
        for step in range(warmup + batches):
            timed = timer.counting = step >= warmup
            index = np.array([(step * batch_size + i) % source.count for i in range(batch_size)])
            x_batch, y_batch, _ = source.load(index)
            outputs = model.forward(x_batch, training=True)
            (_, grads, flags), seconds = _timed(objective.value_and_gradient, outputs, y_batch)
            loss_time += seconds * timed
            model.backward(grads, input_gradient=False, preactivation=flags)
            _, seconds = _timed(optimizer.apply, model.trainable_params(), model.trainable_grads())
            update_time += seconds * timed
    finally:
        executor.timer = None
        model.set_weights(saved_weights)
        model.rng.bit_generator.state = saved_rng
    rows = []
    for (kind, names), totals in timer.seconds.items():
        rows.append({"name": " + ".join(names), "type": kind, "layers": list(names),
                     "kernel": step_kernel(timer.steps[kind, names]),
                     "forward_ms": 1e3 * totals["forward"] / batches,
                     "backward_ms": 1e3 * totals["backward"] / batches})
    loss = model.loss if not isinstance(model.loss, list) else model.loss[0]
    rows.append({"name": "loss", "type": type(loss).__name__, "forward_ms": 1e3 * loss_time / batches,
                 "backward_ms": 0.0})
    rows.append({"name": "optimizer", "type": type(optimizer).__name__, "forward_ms": 0.0,
                 "backward_ms": 1e3 * update_time / batches})
    return rows, source.count


def _report(rows, net, batches, batch_size, samples, print_fn):
    """Add each row's share of the step, print the table (unless ``print_fn`` is None), return rows."""
    total = sum(r["forward_ms"] + r["backward_ms"] for r in rows)
    for row in rows:
        row["share"] = (row["forward_ms"] + row["backward_ms"]) / total if total else 0.0
    if print_fn is not None:
        table = [[r["name"], r["type"], f"{r['forward_ms']:.2f}", f"{r['backward_ms']:.2f}",
                  f"{r['forward_ms'] + r['backward_ms']:.2f}", f"{100 * r['share']:.1f}%"] for r in rows]
        table.append(["total", "", f"{sum(r['forward_ms'] for r in rows):.2f}",
                      f"{sum(r['backward_ms'] for r in rows):.2f}", f"{total:.2f}", "100.0%"])
        print_fn(f"Per-batch time over {batches} training steps of batch size {batch_size}, "
                 f"{options_for(net).describe()}:")
        print_fn(_strategy_note(net, batch_size, max(1, samples // batch_size)))
        print_fn(tabulate(table, headers=["Step", "Type", "Forward ms", "Backward ms", "Total ms",
                                          "Share"],
                          tablefmt="simple", disable_numparse=True,
                          colalign=("left", "left", "right", "right", "right", "right")))
    return rows
