"""Functional Keras models (``keras.Model(inputs, outputs)``) read into a :class:`modularcnn.Model`.

A functional config lists its layers, each with the calls made of it (``inbound_nodes``), and names the
model's ends (``input_layers``, ``output_layers``). Both dialects are read:

- **Keras 3**: each call is ``{"args": [...], "kwargs": {...}}`` where a tensor is
  ``{"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node index, tensor index]}}``
  (a merge layer's one argument is a list of them); a single input or output is one bare
  ``[layer, node, tensor]``.
- **Keras 2** (tf.keras): each call is a list of ``[layer, node index, tensor index, kwargs]``, one per
  input tensor.

The node index is which call of that layer made the tensor (a shared layer has several); the tensor
index must be 0 (every layer we read has one output). Nested ``Sequential`` and functional models
become :class:`~modularcnn.layers.NestedModel` layers; merge layers (``Add``, ``Concatenate``, ...) are
ours of the same names. What cannot be read the same way is refused with a
:class:`~modularcnn.ModelFileError` naming the layer: unknown or custom layers, ``Lambda``,
``TFOpLambda`` and ops layers (their code would have to be executed), call keyword arguments other than
``mask=None`` and ``training=None/False``, references to unknown layers or calls, and cycles.

The graph is built with a work list (each call waits on a count of missing tensors), so a config of
``n`` layers costs ``O(n + calls)``; at most :data:`MAX_LAYERS` layers, :data:`MAX_CALLS` calls and
:data:`MAX_DEPTH` levels of nesting are read, so a hostile config is refused in bounded time.
"""

from collections import deque

from ..layers.input_layer import InputLayer
from . import keras_layers

#: The most layers one file may declare (all nesting levels together); ResNet-152 has about 500.
MAX_LAYERS = 20_000
#: The most layer calls (and the most tensor references) one file may declare.
MAX_CALLS = 200_000
#: The deepest nesting of models inside models.
MAX_DEPTH = 32
#: Class names of Keras models (nested ones, or the file's own).
MODEL_CLASSES = ("Functional", "Model")
NESTED_CLASSES = ("Sequential", *MODEL_CLASSES)
#: Call keyword arguments that do not change what a layer predicts, with the values accepted.
_HARMLESS_KWARGS = {"mask": (None,), "training": (None, False)}


class Limits:
    """The layer and call counts of one file, shared by every nesting level."""

    def __init__(self, bad):
        self.bad, self.layers, self.calls = bad, 0, 0

    def add_layers(self, count):
        self.layers += count
        if self.layers > MAX_LAYERS:
            raise self.bad(f"the model declares more than {MAX_LAYERS:,} layers")

    def add_calls(self, count):
        self.calls += count
        if self.calls > MAX_CALLS:
            raise self.bad(f"the model declares more than {MAX_CALLS:,} layer calls or tensor "
                           "references")


def is_functional(config):
    """True when a model config (``{"class_name", "config"}``) is a functional model."""
    return isinstance(config, dict) and config.get("class_name") in MODEL_CLASSES


# ------------------------------------------------------------------------------------------------
# Parsing the calls
# ------------------------------------------------------------------------------------------------

def _reference(value, what, bad):
    """``(layer name, node index)`` of a ``[name, node, tensor(, kwargs)]`` reference."""
    if not (isinstance(value, (list, tuple)) and len(value) in (3, 4) and isinstance(value[0], str)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value[1:3])):
        raise bad(f"{what} should be [layer name, node index, tensor index], found {str(value)[:80]}")
    if value[2] != 0:
        raise bad(f"{what}: tensor {value[2]} of layer {value[0]!r} is used, but modularcnn's layers "
                  "make one tensor each (layers with several outputs are not supported)")
    return value[0], value[1]


def _check_kwargs(kwargs, layer_name, bad):
    if kwargs in (None, {}):
        return
    if not isinstance(kwargs, dict):
        raise bad(f"layer {layer_name!r}: call arguments should be a dict, found {str(kwargs)[:80]}")
    for key, value in kwargs.items():
        if key not in _HARMLESS_KWARGS or value not in _HARMLESS_KWARGS[key]:
            raise bad(f"layer {layer_name!r} is called with {key}={str(value)[:60]}, which modularcnn "
                      f"does not support (accepted: mask=None, training=None or False)")


def _keras3_tensor(value, layer_name, bad):
    if not (isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"
            and isinstance(value.get("config"), dict)):
        raise bad(f"layer {layer_name!r} is called on {str(value)[:80]}, not on tensors of the model "
                  "(constant or non-tensor call arguments are not supported)")
    return _reference(value["config"].get("keras_history"),
                      f"layer {layer_name!r}: an inbound tensor's keras_history", bad)


def parse_call(node, layer_name, bad):
    """``(references, packed)`` of one inbound node: the tensors a call takes, and whether they came
    as a list (a merge layer's input) rather than as one tensor."""
    if isinstance(node, dict):  # Keras 3
        args, kwargs = node.get("args"), node.get("kwargs", {})
        if not isinstance(args, list) or len(args) != 1:
            raise bad(f"layer {layer_name!r}: a call should take one positional argument (its input), "
                      f"found {str(args)[:80]}")
        _check_kwargs(kwargs, layer_name, bad)
        argument = args[0]
        if isinstance(argument, list):
            if not argument:
                raise bad(f"layer {layer_name!r} is called on an empty list")
            return [_keras3_tensor(t, layer_name, bad) for t in argument], True
        return [_keras3_tensor(argument, layer_name, bad)], False
    if isinstance(node, list) and node:  # Keras 2: [[name, node, tensor, kwargs], ...]
        references = []
        for item in node:
            references.append(_reference(item, f"layer {layer_name!r}: an inbound tensor", bad))
            if len(item) == 4:
                _check_kwargs(item[3], layer_name, bad)
        return references, len(references) > 1
    raise bad(f"layer {layer_name!r}: an inbound node should be a dict (Keras 3) or a non-empty list "
              f"(Keras 2), found {str(node)[:80]}")


def _ends(value, key, bad):
    """The references of ``input_layers`` / ``output_layers``: one bare reference or a list of them."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return [_reference(value, key, bad)], False
    if not isinstance(value, list) or not value:
        raise bad(f"the model's {key!r} should be a reference or a non-empty list of them, found "
                  f"{str(value)[:80]}")
    return [_reference(v, f"{key} entry", bad) for v in value], True


# ------------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------------

def _input_layer(name, config, bad):
    shape = keras_layers.input_shape_of("InputLayer", config)
    if shape is None or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in shape):
        raise bad(f"input layer {name!r} declares no complete shape (found {shape}); modularcnn needs "
                  "every per-sample dimension")
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    return InputLayer(shape=shape, dtype="float64" if dtype == "float64" else "float32", name=name)


class _Entry:
    """One layer of the config: its class, config, calls, and the layer made for it."""

    def __init__(self, class_name, config, name, calls):
        self.class_name, self.config, self.name, self.calls = class_name, config, name, calls
        self.layer = None
        self.children = None  # the nested model's entries (for the weights), when it is one
        self.outputs = [None] * len(calls)


def build_functional(model_config, bad, weight_bytes, keras2, limits=None, depth=0):
    """``(Model, made)`` for a functional config; ``made`` lists every Keras layer in the config's
    order as ``(class_name, name, [layer] or [], children)`` (``children``: a nested model's own list,
    else None), which is how the weights files address them.

    ``weight_bytes`` is the size of the weights file: Keras stores each weight in at least 4 bytes,
    so a config declaring more weights is refused as the layer is built, before its arrays exist.
    """
    from ..functional import Model  # noqa: PLC0415 - the networks import the saving package

    budget = weight_bytes // 4 + 1
    limits = limits or Limits(bad)
    if depth > MAX_DEPTH:
        raise bad(f"models are nested more than {MAX_DEPTH} deep")
    body = model_config.get("config")
    if not isinstance(body, dict):
        raise bad("the model config has no 'config' object")
    raw = body.get("layers")
    if not isinstance(raw, list) or not raw:
        raise bad("the functional model lists no layers")
    limits.add_layers(len(raw))
    entries, by_name = [], {}
    for index, item in enumerate(raw):
        where = f"{bad.where} layer {index}"
        class_name, config = keras_layers.unwrap_entry(item, where, extra=NESTED_CLASSES)
        name = item.get("name", config.get("name"))
        if not isinstance(name, str) or not name:
            raise bad(f"layer {index} ({class_name}) has no name")
        if name in by_name:
            raise bad(f"two layers are named {name!r}")
        nodes = item.get("inbound_nodes", [])
        if not isinstance(nodes, list):
            raise bad(f"layer {name!r}: 'inbound_nodes' should be a list")
        limits.add_calls(len(nodes))
        calls = [parse_call(node, name, bad) for node in nodes]
        limits.add_calls(sum(len(refs) for refs, _ in calls))
        if class_name == "InputLayer":
            if calls:
                raise bad(f"the input layer {name!r} cannot have inbound nodes")
            calls = [([], False)]
        elif not calls:
            raise bad(f"layer {name!r} is never called (no inbound nodes)")
        entry = _Entry(class_name, config, name, calls)
        entries.append(entry)
        by_name[name] = entry
    # Every reference must name a layer and one of its calls before anything is built.
    for entry in entries:
        for references, _ in entry.calls:
            for layer_name, node in references:
                _check_target(by_name, layer_name, node, f"layer {entry.name!r}", bad)
    input_refs, inputs_listed = _ends(body.get("input_layers"), "input_layers", bad)
    output_refs, outputs_listed = _ends(body.get("output_layers"), "output_layers", bad)
    for layer_name, node in input_refs:
        _check_target(by_name, layer_name, node, "input_layers", bad)
        if by_name[layer_name].class_name != "InputLayer":
            raise bad(f"input_layers names {layer_name!r}, which is a {by_name[layer_name].class_name}, "
                      "not an InputLayer")
    for layer_name, node in output_refs:
        _check_target(by_name, layer_name, node, "output_layers", bad)

    _run_calls(entries, by_name, bad, weight_bytes, budget, keras2, limits, depth)

    inputs = [by_name[n].outputs[k] for n, k in input_refs]
    outputs = [by_name[n].outputs[k] for n, k in output_refs]
    name = body.get("name")
    try:
        model = Model(inputs if inputs_listed else inputs[0], outputs if outputs_listed else outputs[0],
                      name=name if isinstance(name, str) and name else None,
                      trainable=bool(body.get("trainable", True)))
    except ValueError as error:
        raise bad(f"the graph cannot be built: {error}") from None
    made = [(e.class_name, e.name, [e.layer], e.children) for e in entries]
    return model, made


def _check_target(by_name, layer_name, node, what, bad):
    target = by_name.get(layer_name)
    if target is None:
        raise bad(f"{what} refers to the unknown layer {layer_name!r}")
    if node >= len(target.calls):
        raise bad(f"{what} refers to call {node} of layer {layer_name!r}, which is called "
                  f"{len(target.calls)} time{'s' if len(target.calls) != 1 else ''}")


def _run_calls(entries, by_name, bad, weight_bytes, budget, keras2, limits, depth):
    """Call every layer on its inbound tensors once they exist (a work list: linear time)."""
    waiting = {}   # (layer name, node) -> the calls that wait on it
    missing = {}   # (entry index, call index) -> how many of its tensors do not exist yet
    ready = deque()
    for position, entry in enumerate(entries):
        for call, (references, _) in enumerate(entry.calls):
            if not references:
                ready.append((position, call))
                continue
            missing[(position, call)] = len(references)
            for reference in references:
                waiting.setdefault(reference, []).append((position, call))
    weights = [0]
    while ready:
        position, call = ready.popleft()
        entry = entries[position]
        entry.outputs[call] = _call(entry, call, by_name, bad, (weight_bytes, budget), keras2, limits,
                                    depth, weights)
        for waiter in waiting.pop((entry.name, call), ()):
            missing[waiter] -= 1
            if missing[waiter] == 0:
                ready.append(waiter)
    stuck = sorted({entries[p].name for p, c in missing if entries[p].outputs[c] is None})
    if stuck:
        raise bad(f"the layers {stuck[:10]}{' ...' if len(stuck) > 10 else ''} wait on tensors that "
                  "are never made (the graph has a cycle)")


def _call(entry, call, by_name, bad, sizes, keras2, limits, depth, weights):
    """Make ``entry``'s layer (on its first call) and record call number ``call`` of it."""
    if entry.class_name == "InputLayer":
        entry.layer = _input_layer(entry.name, entry.config, bad)
        return entry.layer.output
    references, packed = entry.calls[call]
    tensors = [by_name[n].outputs[k] for n, k in references]
    if entry.layer is None:
        entry.layer = _make_layer(entry, tensors, bad, sizes[0], keras2, limits, depth)
    layer = entry.layer
    if layer.multiple_inputs:
        argument = tensors
    elif packed or len(tensors) != 1:
        raise bad(f"layer {entry.name!r} ({entry.class_name}) takes one tensor, but a call gives it "
                  f"{len(tensors)}")
    else:
        argument = tensors[0]
    before = layer.built
    try:
        output = layer(argument)
    except ValueError as error:
        raise bad(f"layer {entry.name!r} ({entry.class_name}): {error}") from None
    except MemoryError:
        raise bad(f"layer {entry.name!r} ({entry.class_name}) declares more weights than fit in "
                  "memory") from None
    if not before and entry.children is None:
        weights[0] += sum(int(v.size) for v in layer.params.values())
        if weights[0] > sizes[1]:
            raise bad(f"layer {entry.name!r} ({entry.class_name}) brings the model to {weights[0]:,} "
                      "weights, more than the file can hold")
    return output


def _make_layer(entry, tensors, bad, weight_bytes, keras2, limits, depth):
    from ..layers.nested import as_layer  # noqa: PLC0415

    where = f"{bad.where} layer {entry.name!r}"
    if entry.class_name in NESTED_CLASSES:
        nested = {"class_name": entry.class_name, "config": entry.config}
        network, made = build_nested(nested, bad, weight_bytes, keras2, limits, depth + 1)
        entry.children = made
        try:
            return as_layer(network)
        except ValueError as error:
            raise bad(f"layer {entry.name!r} ({entry.class_name}): {error}") from None
    rank = len(tensors[0].sample_shape)
    return keras_layers.layer_from_keras(entry.class_name, entry.config, rank, where, keras2=keras2)


def build_nested(config, bad, weight_bytes, keras2, limits, depth):
    """``(network, made)`` of a nested Sequential or functional model config."""
    from .keras_format import build_network  # noqa: PLC0415 - keras_format imports this module

    if depth > MAX_DEPTH:
        raise bad(f"models are nested more than {MAX_DEPTH} deep")
    if is_functional(config):
        return build_functional(config, bad, weight_bytes, keras2, limits, depth)
    return build_network(config, bad, weight_bytes, keras2=keras2, limits=limits, depth=depth)



# ------------------------------------------------------------------------------------------------
# Writing: a Model as a Keras 3 functional config
# ------------------------------------------------------------------------------------------------

def keras_layer_order(graph):
    """The graph's layers in the order Keras 3 lists a functional model's layers (``model.layers``,
    its config, and the positions in its weights files): by depth from the outputs, deepest (the
    inputs) first, and within a depth in the order a depth-first walk from the outputs first meets
    them. This is Keras's ``map_graph``, so a model built the same way here and in Keras reads the
    other's ``.weights.h5``."""
    first_seen, finished, decreasing = {}, set(), []
    for output in graph.outputs:
        # Iterative form of Keras's recursive walk: pre-order numbering, post-order node list.
        stack = [(output.node, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                finished.add(id(node))
                decreasing.append(node)
                continue
            if id(node) in finished:
                continue
            first_seen.setdefault(id(node.layer), len(first_seen))
            stack.append((node, True))
            for tensor in reversed(node.inputs):
                if id(tensor.node) not in finished:
                    stack.append((tensor.node, False))
    node_depth, layer_depth, layers = {}, {}, {}
    for node in reversed(decreasing):
        depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        layers[id(node.layer)] = node.layer
        node_depth[id(node)] = depth
        for tensor in node.inputs:
            node_depth[id(tensor.node)] = max(depth + 1, node_depth.get(id(tensor.node), 0))
    for tensor in graph.inputs:
        if id(tensor.node.layer) not in layer_depth:
            layer_depth[id(tensor.node.layer)], first_seen[id(tensor.node.layer)] = 0, -1
            layers[id(tensor.node.layer)] = tensor.node.layer
    return sorted(layers.values(), key=lambda layer: (-layer_depth[id(layer)], first_seen[id(layer)]))


def functional_tree(model, layer_items, strict=True):
    """The Keras 3 layers of ``model`` (see :func:`.keras_format.keras_tree`), each entry with its
    ``name`` and ``inbound_nodes``; ``layer_items(layer, input_shape, used, strict)`` gives one layer's
    items (a layer of ours may be a few Keras layers in a chain, e.g. ZeroPadding + Conv2D)."""
    return _functional(model, layer_items, strict)[0]


def _functional(model, layer_items, strict):
    """``(tree, history)``: :func:`functional_tree`, and ``history(tensor)``, the Keras reference
    ``[layer name, node index, 0]`` of one of the model's tensors."""
    from .keras_format import _input_entry  # noqa: PLC0415 - keras_format imports this module

    graph = model.graph
    used = {layer.name for layer in graph.layers}
    chains, tree = {}, []
    for layer in keras_layer_order(graph):
        if isinstance(layer, InputLayer):
            items = [(_input_entry(layer.name, layer.input_shape, layer.dtype), [], [layer], None)]
        else:
            shape = None if layer.multiple_inputs else layer.input_shape
            items = layer_items(layer, shape, used, strict)
        for entry, _, _, _ in items:
            entry["name"] = entry["config"]["name"]
            entry["inbound_nodes"] = []
        chains[id(layer)] = items
        tree.extend(items)

    def history(tensor):
        # A layer written as a chain (ZeroPadding + Conv2D, Dense + LeakyReLU): its last entry's call.
        return [chains[id(tensor.node.layer)][-1][0]["name"], graph.calls[id(tensor.node)], 0]

    def keras_tensor(shape, dtype, reference):
        return {"class_name": "__keras_tensor__",
                "config": {"shape": [None, *shape], "dtype": dtype.name, "keras_history": reference}}

    for node in graph.nodes:
        if not node.inputs:
            continue
        chain, call = chains[id(node.layer)], graph.calls[id(node)]
        tensors = [keras_tensor(t.sample_shape, t.dtype, history(t)) for t in node.inputs]
        chain[0][0]["inbound_nodes"].append({"args": [tensors if node.packed else tensors[0]],
                                             "kwargs": {}})
        for previous, (entry, _, _, _) in zip(chain, chain[1:]):
            # Within a chain the shape only labels the tensor (keras_history is what Keras follows).
            entry["inbound_nodes"].append({"args": [keras_tensor(
                node.output.sample_shape, node.output.dtype, [previous[0]["name"], call, 0])],
                "kwargs": {}})
    return tree, history


def functional_config(model, layer_items):
    """The Keras 3 ``config.json`` object of ``model`` (a single input or output is one bare
    reference, several a list, as Keras writes them)."""
    tree, history = _functional(model, layer_items, True)

    def ends(tensors):
        references = [history(t) for t in tensors]
        return references[0] if len(references) == 1 else references

    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": model.name, "trainable": model.trainable,
                       "layers": [entry for entry, _, _, _ in tree],
                       "input_layers": ends(model.graph.inputs),
                       "output_layers": ends(model.graph.outputs)},
            "registered_name": "Functional", "build_config": {"input_shape": None}}
