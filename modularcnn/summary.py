"""The ``summary()`` table: one row per layer with its output shape and parameter count."""

from .layers.symbolic import format_shape


def _walk(layers, trainable, depth=0):
    """``(depth, layer, effectively trainable)`` for each layer and, indented, the layers inside it."""
    for layer in layers:
        yield depth, layer, trainable and layer.trainable
        yield from _walk(layer.sublayers, trainable and layer.trainable, depth + 1)


def connections(graph):
    """``{id(layer): "conv2d[0][0], dense[1][0]"}``: the tensors each layer's calls take, written as
    Keras writes them (``layer[call index][tensor index]``); ``"-"`` for an input."""
    texts = {}
    for node in graph.nodes:
        refs = [f"{t.node.layer.name}[{graph.calls[id(t.node)]}][0]" for t in node.inputs]
        texts.setdefault(id(node.layer), []).extend(refs)
    return {key: ", ".join(refs) or "-" for key, refs in texts.items()}


def _input_text(net):
    shapes = getattr(net, "input_shapes", None)
    if shapes is not None:
        return "  inputs: " + ", ".join(format_shape(s) for s in shapes) if len(shapes) > 1 else \
            f"  input: {format_shape(shapes[0])}"
    return f"  input: {format_shape(net.input_shape)}" if net.input_shape else ""


def summary_text(net, show_trainable=None, show_plan=False):
    """The summary of ``net`` as a string (see :meth:`modularcnn.Net.summary`); ``show_plan`` adds
    its execution plan (:mod:`modularcnn.execution`).

    A graph (``Model``) gets a "Connected to" column, as Keras prints it.
    """
    if show_trainable is None:
        show_trainable = any(not layer.trainable for layer in net.layers) or not net.trainable
    graph = getattr(net, "graph", None)
    connected = connections(graph) if graph is not None else None
    headers = ["Layer", "Type", "Output Shape", "Param #"] + (["Trainable"] if show_trainable else [])
    if connected is not None:
        headers.append("Connected to")
    rows = []
    for depth, layer, trainable in _walk(net.layers, net.trainable):
        # tabulate strips leading spaces, so nesting is drawn rather than indented.
        row = [("│ " * (depth - 1) + "└ " if depth else "") + layer.name, type(layer).__name__,
               format_shape(layer.output_shape), f"{layer.count_params():,}"]
        if show_trainable:
            row.append("yes" if trainable else "no")
        if connected is not None:
            row.append(connected.get(id(layer), "") if depth == 0 else "")
        rows.append(row)
    from tabulate import tabulate  # noqa: PLC0415 - 30 ms to import; training workers never need it

    table = tabulate(rows, headers=headers, tablefmt="simple", colalign=("left", "left", "left", "right")
                     + (("center",) if show_trainable else ()) + (("left",) if connected else ()))
    total = net.count_params()
    trainable = net.count_params(trainable_only=True)
    title = f'Model: "{net.name}"' + _input_text(net)
    width = max(len(line) for line in table.splitlines()) if rows else len(title)
    lines = [title, "=" * width, table, "=" * width,
             f"Total params: {total:,}",
             f"Trainable params: {trainable:,}",
             f"Non-trainable params: {total - trainable:,}",
             "_" * width]
    if show_plan:
        # The network's own plan (a Model's has one part per chain of its graph).
        lines += [str(net.plan()), "_" * width]
    return "\n".join(lines)
