"""A copy of a network in another process: what it needs (:func:`replica_spec`) and how it is rebuilt
(:func:`build_replica`).

A worker rebuilds the network from its config, not from a pickle: the config is what model files store,
so anything that saves and loads also trains in a worker. Classes outside modularcnn (a custom layer
or loss) travel by module and qualified name and are imported in the worker, which works when the
class is importable by name there (defined in a module on ``sys.path``, not in ``__main__`` or inside
a function): :func:`unsupported_reason` says why a network cannot be rebuilt, before any process
starts.

The execution options (:class:`~modularcnn.execution.ExecutionOptions`: fused steps or the reference
kernels) are part of the spec, so ``net.fusion = False``, ``net.execution_options`` and a
``modularcnn.reference_kernels()`` block reach every worker at every ``fit``.
"""

import importlib
import importlib.util
import sys

import numpy as np

from .. import execution, losses
from ..layers.base import all_layers, get_layer_class


def weight_names(net):
    """``(shared name, layer, key)`` for every array in the top-level layers' ``params``."""
    return [(f"param:{layer.name}/{key}", layer, key) for layer in net.layers for key in layer.params]


def _is_builtin(cls):
    return cls.__module__.startswith("modularcnn.")


def _import_reason(cls, what):
    """Why ``cls`` cannot be imported by name in another process, or None."""
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        where = "in __main__ (a script or notebook)" if cls.__module__ == "__main__" else "in a function"
        return f"{what} is defined {where}, which a worker cannot import; move it into a module"
    try:
        found = importlib.util.find_spec(cls.__module__) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"{what} comes from {cls.__module__!r}, which a worker cannot import"
    return None


def unsupported_reason(net):
    """Why ``net`` cannot be trained by processes that each hold a rebuilt copy, or None when it can."""
    if getattr(net, "structured", False):
        return ("a model with several inputs or outputs trains in one process (data-parallel workers "
                "exchange one input and one target array per batch)")
    if getattr(net, "loss_weights", None) not in (None, [1.0]):
        return "a model compiled with loss_weights trains in one process"
    for layer in all_layers(net.layers):
        kind = type(layer).__name__
        if not layer.samples_independent and not layer.syncs_batch_statistics:
            return (f"layer {layer.name!r} ({kind}) needs statistics over the whole batch and does "
                    "not take them through batch_reducer (syncs_batch_statistics is False)")
        if _is_builtin(type(layer)):
            continue
        try:
            registered = get_layer_class(kind) is type(layer)
        except ValueError:
            registered = False
        if not registered:
            return (f"layer {layer.name!r} is a custom {kind}, which a worker cannot rebuild: "
                    "register it with @modularcnn.layers.register_layer")
        reason = _import_reason(type(layer), f"layer {layer.name!r} (a custom {kind})")
        if reason:
            return reason
    if not _is_builtin(type(net.loss)):
        reason = _import_reason(type(net.loss), f"the loss {type(net.loss).__name__} is custom and")
        if reason:
            return reason
    if not sys.executable:
        return "sys.executable is unknown, so no worker process can be started"
    return None


def _class_path(cls):
    return [cls.__module__, cls.__qualname__]


def _import_class(path):
    module, qualname = path
    target = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def execution_options(net):
    """The options ``net`` runs with here and now (a ``reference_kernels()`` block included), as the
    dict every worker receives."""
    return execution.options_for(net).to_dict()


def apply_execution_options(net, options):
    """Make ``net`` run as ``options`` (from :func:`execution_options`) say."""
    net.execution_options = execution.ExecutionOptions.from_dict(options)


def plan_kinds(net):
    """The class name of every step ``net`` would run now (a layer's, or a fused step's)."""
    return net.plan().kinds()  # a Model plans its graph's chains itself


def ran_kinds(net):
    """The class name of every step of ``net``'s last forward pass (None before the first)."""
    ran = getattr(net, "_plan", None)
    return None if ran is None else ran.kinds()


def replica_spec(net):
    """Everything another process needs to rebuild ``net`` (JSON-serialisable): its config, loss, seed,
    execution options, the classes to import and this process's ``sys.path`` to find them."""
    custom = {type(layer).__name__: _class_path(type(layer))
              for layer in all_layers(net.layers) if not _is_builtin(type(layer))}
    loss = net.loss
    if _is_builtin(type(loss)):
        loss_spec = {"serialized": losses.serialize(loss)}
    else:
        loss_spec = {"class": _class_path(type(loss)), "config": loss.get_config()}
    return {"net": net.get_config(), "loss": loss_spec, "layer_classes": custom,
            "seed": net.seed, "options": execution_options(net), "sys_path": list(sys.path)}


def build_replica(spec, worker=0):
    """The network ``spec`` (from :func:`replica_spec`) describes, compiled with its loss, rebuilt in
    this process: fresh arrays, which the caller replaces with shared ones.

    ``worker`` seeds its dropout generator: a seeded fit repeats exactly for a given number of workers.
    """
    from ..net import Net  # noqa: PLC0415 - imported when a worker starts, not when this module loads

    sys.path.extend(entry for entry in spec.get("sys_path", ()) if entry not in sys.path)
    custom = {name: _import_class(path) for name, path in spec.get("layer_classes", {}).items()}
    net = Net.from_config(spec["net"], custom_objects=custom)
    seed = spec["seed"]
    net.rng = np.random.default_rng(None if seed is None else [seed, worker])
    for layer in all_layers(net.layers):
        layer.adopt_rng(net.rng)
    loss_spec = spec["loss"]
    if "serialized" in loss_spec:
        loss = losses.get(loss_spec["serialized"])
    else:
        loss = _import_class(loss_spec["class"]).from_config(loss_spec["config"])
    net.compile(optimizer="sgd", loss=loss, metrics=())
    apply_execution_options(net, spec["options"])
    return net
