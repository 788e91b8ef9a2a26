"""Per-layer timing of training steps: where does a batch's time go?

``profile(net, x, y)`` runs real training steps (forward, loss, backward, optimizer update) on a few
batches, timing each layer's forward and backward pass separately, and prints a table like the
breakdowns people publish for from-scratch CNNs. The network is left as it was: weights, optimizer
state and random generator are restored afterwards.
"""

import copy
import time

from tabulate import tabulate

from .training.data import as_inputs, as_targets, check_batch_size
from .training.loop import _objective


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


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
        One per layer plus ``loss`` and ``optimizer`` rows: ``name``, ``type``, ``forward_ms`` and
        ``backward_ms`` (mean per batch), ``share`` (fraction of the whole step).
    """
    batch_size = check_batch_size(batch_size)
    if batches < 1:
        raise ValueError(f"batches must be at least 1, got {batches!r}")
    objective = _objective(net)
    x = as_inputs(net, x)
    y = as_targets(net, net.loss, y, len(x))
    saved_weights = net.get_weights()
    saved_rng = copy.deepcopy(net.rng.bit_generator.state)
    optimizer = copy.deepcopy(net.optimizer)  # the model's own optimizer state stays untouched

    layers = net.layers
    forward = [0.0] * len(layers)
    backward = [0.0] * len(layers)
    loss_time = update_time = 0.0
    try:
        for step in range(warmup + batches):
            timed = step >= warmup
            index = [(step * batch_size + i) % len(x) for i in range(batch_size)]
            out, y_batch = x[index], y[index]
            for i, layer in enumerate(layers):
                out, seconds = _timed(layer.forward, out, training=True)
                forward[i] += seconds * timed
            (value, grad, from_preactivation), seconds = _timed(
                objective.value_and_gradient, out, y_batch)
            loss_time += seconds * timed
            layers[0].input_grad_needed = False
            for i in range(len(layers) - 1, -1, -1):
                step_backward = (layers[i].backward_preactivation
                                 if from_preactivation and i == len(layers) - 1 else layers[i].backward)
                grad, seconds = _timed(step_backward, grad)
                backward[i] += seconds * timed
            layers[0].input_grad_needed = True
            _, seconds = _timed(optimizer.apply, net.trainable_params(), net.trainable_grads())
            update_time += seconds * timed
    finally:
        layers[0].input_grad_needed = True
        net.set_weights(saved_weights)
        net.rng.bit_generator.state = saved_rng

    rows = [{"name": layer.name, "type": type(layer).__name__, "forward_ms": 1e3 * f / batches,
             "backward_ms": 1e3 * b / batches} for layer, f, b in zip(layers, forward, backward)]
    rows.append({"name": "loss", "type": type(net.loss).__name__, "forward_ms": 1e3 * loss_time / batches,
                 "backward_ms": 0.0})
    rows.append({"name": "optimizer", "type": type(optimizer).__name__, "forward_ms": 0.0,
                 "backward_ms": 1e3 * update_time / batches})
    total = sum(r["forward_ms"] + r["backward_ms"] for r in rows)
    for row in rows:
        row["share"] = (row["forward_ms"] + row["backward_ms"]) / total if total else 0.0
    if print_fn is not None:
        table = [[r["name"], r["type"], f"{r['forward_ms']:.2f}", f"{r['backward_ms']:.2f}",
                  f"{r['forward_ms'] + r['backward_ms']:.2f}", f"{100 * r['share']:.1f}%"] for r in rows]
        table.append(["total", "", f"{sum(r['forward_ms'] for r in rows):.2f}",
                      f"{sum(r['backward_ms'] for r in rows):.2f}", f"{total:.2f}", "100.0%"])
        print_fn(f"Per-batch time over {batches} training steps of batch size {batch_size}:")
        print_fn(tabulate(table, headers=["Layer", "Type", "Forward ms", "Backward ms", "Total ms", "Share"],
                          tablefmt="simple", disable_numparse=True,
                          colalign=("left", "left", "right", "right", "right", "right")))
    return rows
