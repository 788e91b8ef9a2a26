"""The graph behind :class:`modularcnn.Model`: which layer calls make the outputs from the inputs.

:func:`trace` follows the :class:`~modularcnn.layers.symbolic.Node` records back from the output
tensors and returns a :class:`Graph`: the nodes in a topological order (every node after the nodes
that make its inputs, the model's inputs first), the distinct layers, and who consumes each tensor.
It is where a graph is validated:

- every input must be an ``Input(...)`` tensor, each given once;
- every input an output depends on must be among the inputs (*graph disconnected* otherwise), and every
  input must be used by some output;
- distinct layers must have distinct names (unnamed layers get Keras-style names: ``dense``,
  ``dense_1``, ...);
- a layer may be called several times (a *shared* layer, whose shapes were checked at each call), except
  one that holds other layers (``Residual``, a nested ``Net`` or ``Model``), which is refused.

Graphs made by calling layers cannot have cycles (a node is made after its inputs); graphs read from a
config can, and :func:`rebuild` refuses them.

The config form (:func:`topology_config`) is Keras 2's functional layout: each layer lists its
``inbound_nodes``, one per call, each a list of ``[layer name, node index, tensor index]`` of the
tensors it was called on; ``input_layers`` and ``output_layers`` name the model's ends the same way.
"""

import inspect

from .errors import ModelFileError
from .layers.base import Layer, get_layer_class, snake_case
from .layers.input_layer import InputLayer
from .layers.symbolic import SymbolicTensor


class Graph:
    """A traced graph (see the module docstring).

    Attributes
    ----------
    inputs, outputs : list of SymbolicTensor
    nodes : list of Node
        Topological order; the inputs' nodes first, in the order of ``inputs``.
    layers : list of Layer
        Each distinct layer once, in the order of its first node.
    calls : dict id(node) -> int
        Which call of its layer a node is (0 for the first), in the order of ``nodes``.
    consumers : dict id(tensor) -> list of Node
        The nodes that take each tensor, in the order of ``nodes``.
    """

    def __init__(self, inputs, outputs, nodes):
        self.inputs, self.outputs, self.nodes = inputs, outputs, nodes
        self.layers, self.calls, self.consumers, seen = [], {}, {}, {}
        for node in nodes:
            count = seen.get(id(node.layer), 0)
            if count == 0:
                self.layers.append(node.layer)
            seen[id(node.layer)] = count + 1
            self.calls[id(node)] = count
            for tensor in node.inputs:
                self.consumers.setdefault(id(tensor), []).append(node)
        self.call_counts = seen

    def is_shared(self, layer):
        """True when ``layer`` is called more than once in this graph."""
        return self.call_counts.get(id(layer), 0) > 1


def _tensor_list(value, what):
    if isinstance(value, SymbolicTensor):
        return [value], None
    if isinstance(value, dict) and value and all(isinstance(v, SymbolicTensor) for v in value.values()):
        return list(value.values()), [str(k) for k in value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, SymbolicTensor) for v in value):
        return list(value), None
    raise ValueError(f"Model: {what} must be a symbolic tensor (from Input or a layer call), or a "
                     f"non-empty list or dict of them, got {type(value).__name__}")


def as_tensors(value, what):
    """``(tensors, keys)``: a tensor, list or dict of tensors as a list, with the dict's keys (or None)."""
    return _tensor_list(value, what)


def _is_input_tensor(tensor):
    return isinstance(tensor.node.layer, InputLayer) and not tensor.node.inputs


def trace(inputs, outputs):
    """The :class:`Graph` from ``inputs`` to ``outputs`` (lists of tensors), validated."""
    for tensor in inputs:
        if not _is_input_tensor(tensor):
            raise ValueError(f"Model: every input must be an Input(...) tensor, got one made by "
                             f"{tensor.node.layer.describe()}")
    if len({id(t) for t in inputs}) != len(inputs):
        raise ValueError("Model: the same Input is given twice in inputs")
    input_ids = {id(t.node) for t in inputs}
    order = [t.node for t in inputs]
    done = set(input_ids)
    # Iterative depth-first search (a deep chain must not hit Python's recursion limit).
    for output in outputs:
        stack = [(output.node, False)]
        on_path = set()
        while stack:
            node, expanded = stack.pop()
            if id(node) in done:
                continue
            if expanded:
                on_path.discard(id(node))
                done.add(id(node))
                order.append(node)
                continue
            if id(node) in on_path:
                raise ValueError(f"Model: the graph has a cycle through {node.layer.describe()}")
            if not node.inputs:
                names = [t.name for t in inputs]
                made_by = output.node.layer.describe()
                raise ValueError(
                    f"Model: graph disconnected: the output made by {made_by} needs the input "
                    f"{node.layer.name or 'unnamed'!r} {node.layer.input_shape}, which is not among "
                    f"the model's inputs {names}")
            on_path.add(id(node))
            stack.append((node, True))
            for tensor in reversed(node.inputs):
                if id(tensor.node) not in done:
                    stack.append((tensor.node, False))
    graph = Graph(inputs, outputs, order)
    for tensor in inputs:
        if id(tensor) not in graph.consumers and all(o is not tensor for o in outputs):
            raise ValueError(f"Model: the input {tensor.name or tensor.node.layer.describe()!r} is not "
                             "connected to any output")
    for layer in graph.layers:
        if graph.is_shared(layer) and layer.sublayers:
            raise ValueError(f"Model: {layer.describe()} holds other layers and is called "
                             f"{graph.call_counts[id(layer)]} times; only layers without inner layers "
                             "can be shared (build one block per call)")
    _name_layers(graph.layers)
    return graph


def _name_layers(layers):
    """Give unnamed layers unique Keras-style names; refuse two distinct layers with one name."""
    taken = {}
    for layer in layers:
        if layer.name is None:
            continue
        if layer.name in taken:
            raise ValueError(f"Model: two different layers are named {layer.name!r}: "
                             f"{taken[layer.name].describe()} and {type(layer).__name__}; layer names "
                             "must be unique in a model")
        taken[layer.name] = layer
    counts = {}
    for layer in layers:
        if layer.name is not None:
            continue
        prefix = snake_case(type(layer).__name__)
        count = counts.get(prefix, 0)
        name = prefix if count == 0 else f"{prefix}_{count}"
        while name in taken:
            count += 1
            name = f"{prefix}_{count}"
        counts[prefix] = count + 1
        layer.name = name
        taken[name] = layer


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------


def _reference(graph, tensor):
    return [tensor.node.layer.name, graph.calls[id(tensor.node)], 0]


def topology_config(graph, layer_config):
    """The graph as JSON data; ``layer_config(layer)`` gives each layer's ``{"class_name", "config"}``."""
    inbound = {id(layer): [] for layer in graph.layers}
    for node in graph.nodes:
        if node.inputs:
            inbound[id(node.layer)].append([_reference(graph, t) for t in node.inputs])
    layers = []
    for layer in graph.layers:
        entry = dict(layer_config(layer))
        entry["name"] = layer.name
        entry["inbound_nodes"] = inbound[id(layer)]
        layers.append(entry)
    return {"layers": layers,
            "input_layers": [_reference(graph, t) for t in graph.inputs],
            "output_layers": [_reference(graph, t) for t in graph.outputs]}


def _bad(message):
    return ModelFileError(f"model config: {message}")


def _checked_reference(value, what):
    if not (isinstance(value, list) and len(value) in (3, 4) and isinstance(value[0], str)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value[1:3])):
        raise _bad(f"{what} should be [layer name, node index, tensor index], found {str(value)[:80]}")
    if value[2] != 0:
        raise _bad(f"{what}: layer {value[0]!r} has one output tensor, found tensor index {value[2]}")
    return value[0], value[1]


def rebuild(config, make_layer):
    """``(inputs, outputs)`` tensors of the graph ``config`` describes (from :func:`topology_config`).

    ``make_layer(entry)`` turns a layer entry into an unbuilt layer; each layer is then called on its
    inbound tensors in an order that respects their dependencies. Dangling references, duplicate names
    and cycles raise :class:`~modularcnn.ModelFileError`.
    """
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries:
        raise _bad(f"'layers' should be a non-empty list, found {type(entries).__name__}")
    layers, pending = {}, {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _bad(f"layer entry {index} should be a dict with a 'name', found {str(entry)[:80]}")
        name = entry["name"]
        if name in layers:
            raise _bad(f"two layers are named {name!r}")
        inbound = entry.get("inbound_nodes", [])
        if not isinstance(inbound, list) or not all(isinstance(n, list) for n in inbound):
            raise _bad(f"layer {name!r}: 'inbound_nodes' should be a list of lists")
        layer = make_layer(entry)
        if not isinstance(layer, Layer):
            raise _bad(f"layer {name!r} did not rebuild into a Layer")
        layer.name = name
        layers[name] = layer
        if isinstance(layer, InputLayer):
            if inbound:
                raise _bad(f"the input layer {name!r} cannot have inbound nodes")
        elif not inbound:
            raise _bad(f"layer {name!r} is never called (no inbound nodes)")
        pending[name] = [[_checked_reference(r, f"layer {name!r}: an inbound tensor") for r in node]
                         for node in inbound]
    tensors = {(name, 0): layer.output for name, layer in layers.items() if isinstance(layer, InputLayer)}
    for references in pending.values():
        for layer_name, _ in (r for node in references for r in node):
            if layer_name not in layers:
                raise _bad(f"an inbound node refers to the unknown layer {layer_name!r}")
    made = dict.fromkeys(pending, 0)
    progress = True
    while progress:
        progress = False
        for name, nodes in pending.items():
            while made[name] < len(nodes) and all(ref in tensors for ref in nodes[made[name]]):
                layer = layers[name]
                call = [tensors[ref] for ref in nodes[made[name]]]
                if len(call) > 1 and not layer.multiple_inputs:
                    raise _bad(f"layer {name!r} takes one tensor, but a node gives it {len(call)}")
                try:
                    output = layer(call if layer.multiple_inputs else call[0])
                except ValueError as error:
                    raise _bad(f"layer {name!r}: {error}") from None
                tensors[(name, made[name])] = output
                made[name] += 1
                progress = True
    stuck = [name for name, nodes in pending.items() if made[name] < len(nodes)]
    if stuck:
        raise _bad(f"the layers {stuck} wait on tensors that are never made (a cycle, or a reference "
                   "to a call that does not exist)")

    def ends(key):
        references = config.get(key)
        if not isinstance(references, list) or not references:
            raise _bad(f"{key!r} should be a non-empty list")
        found = []
        for ref in references:
            name, call = _checked_reference(ref, f"{key} entry")
            if (name, call) not in tensors:
                raise _bad(f"{key}: no tensor {[name, call, 0]}")
            found.append(tensors[(name, call)])
        return found

    return ends("input_layers"), ends("output_layers")


def layer_from_entry(entry, custom_objects=None):
    """An unbuilt layer from ``{"class_name": ..., "config": {...}}`` through the layer registry."""
    if not (isinstance(entry.get("class_name"), str) and isinstance(entry.get("config"), dict)):
        raise _bad(f"layer {entry.get('name')!r} should have 'class_name' and 'config'")
    try:
        layer_class = get_layer_class(entry["class_name"], custom_objects)
    except ValueError as error:
        raise _bad(f"layer {entry.get('name')!r}: {error}") from None
    config = dict(entry["config"])
    if "custom_objects" in inspect.signature(layer_class.from_config).parameters:
        return layer_class.from_config(config, custom_objects=custom_objects)
    return layer_class.from_config(config)
