"""The ``summary()`` table: one row per layer with its output shape and parameter count."""

import numbers

from .layers.symbolic import format_shape

#: The widest table ``line_length``/``positions`` may ask for (each line is built in memory).
MAX_LINE = 10_000
#: The narrowest column ``line_length``/``positions`` may ask for (a cell is wrapped to fit it).
MIN_COLUMN = 4


def _walk(layers, trainable, expand, depth=0):
    """``(depth, layer, effectively trainable)`` for each layer and, when ``expand``, indented, the
    layers inside it."""
    for layer in layers:
        yield depth, layer, trainable and layer.trainable
        if expand:
            yield from _walk(layer.sublayers, trainable and layer.trainable, expand, depth + 1)


def column_widths(columns, line_length, positions):
    """The widest each of ``columns`` columns may be for Keras's ``line_length`` and ``positions``
    (where each column ends: fractions of ``line_length`` when all are <= 1, else characters);
    ``(widths, line length)``, ``(None, None)`` when neither is given. ``ValueError`` for lengths and
    positions that cannot hold the table."""
    if line_length is None and positions is None:
        return None, None
    if line_length is not None and (isinstance(line_length, bool)
                                    or not isinstance(line_length, numbers.Integral)
                                    or not (MIN_COLUMN + 2) * columns <= line_length <= MAX_LINE):
        raise ValueError(f"summary: line_length must be an int in [{(MIN_COLUMN + 2) * columns}, "
                         f"{MAX_LINE}] for {columns} columns, got {line_length!r}")
    if positions is None:
        positions = [(k + 1) / columns for k in range(columns)]
    if (not isinstance(positions, (list, tuple)) or len(positions) != columns
            or any(isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p <= MAX_LINE
                   for p in positions)):
        raise ValueError(f"summary: positions must be {columns} positive numbers (one per column), "
                         f"got {positions!r}")
    line_length = line_length or (max(positions) if max(positions) > 1 else 98)
    ends = [p * line_length if max(positions) <= 1 else p for p in positions]
    starts = [0] + ends[:-1]
    # Two characters separate columns; a column narrower than MIN_COLUMN cannot show a shape.
    widths = [int(end - start) - 2 for start, end in zip(starts, ends)]
    if any(width < MIN_COLUMN for width in widths):
        raise ValueError(f"summary: positions {list(positions)} leave a column narrower than "
                         f"{MIN_COLUMN} characters in a line of {line_length}")
    return widths, int(line_length)


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


def summary_text(net, show_trainable=None, show_plan=False, expand_nested=False, line_length=None,
                 positions=None):
    """The summary of ``net`` as a string (see :meth:`modularcnn.Net.summary`); ``show_plan`` adds
    its execution plan (:mod:`modularcnn.execution`).

    A graph (``Model``) gets a "Connected to" column, as Keras prints it.
    """
    expand_nested = bool(expand_nested)
    if show_trainable is not None and not isinstance(show_trainable, bool):
        raise ValueError(f"summary: show_trainable must be True, False or None, got {show_trainable!r}")
    if show_trainable is None:
        show_trainable = any(not layer.trainable for layer in net.layers) or not net.trainable
    graph = getattr(net, "graph", None)
    connected = connections(graph) if graph is not None else None
    headers = ["Layer", "Type", "Output Shape", "Param #"] + (["Trainable"] if show_trainable else [])
    if connected is not None:
        headers.append("Connected to")
    widths, line_length = column_widths(len(headers), line_length, positions)
    rows = []
    for depth, layer, trainable in _walk(net.layers, net.trainable, expand_nested):
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
                     + (("center",) if show_trainable else ()) + (("left",) if connected else ()),
                     maxcolwidths=widths, maxheadercolwidths=widths)
    total = net.count_params()
    trainable = net.count_params(trainable_only=True)
    title = f'Model: "{net.name}"' + _input_text(net)
    width = max(len(line) for line in table.splitlines()) if rows else len(title)
    if line_length is not None:
        width = max(width, line_length)
    lines = [title, "=" * width, table, "=" * width,
             f"Total params: {total:,}",
             f"Trainable params: {trainable:,}",
             f"Non-trainable params: {total - trainable:,}",
             "_" * width]
    if show_plan:
        # The network's own plan (a Model's has one part per chain of its graph).
        lines += [str(net.plan()), "_" * width]
    return "\n".join(lines)
