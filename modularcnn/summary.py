"""The ``summary()`` table: one row per layer with its output shape and parameter count."""

from .layers.symbolic import format_shape


def _walk(layers, trainable, depth=0):
    """``(depth, layer, effectively trainable)`` for each layer and, indented, the layers inside it."""
    for layer in layers:
        yield depth, layer, trainable and layer.trainable
        yield from _walk(layer.sublayers, trainable and layer.trainable, depth + 1)


def summary_text(net, show_trainable=None, show_plan=False):
    """The summary of ``net`` as a string (see :meth:`modularcnn.Net.summary`); ``show_plan`` adds
    its execution plan (:mod:`modularcnn.execution`)."""
    if show_trainable is None:
        show_trainable = any(not layer.trainable for layer in net.layers) or not net.trainable
    headers = ["Layer", "Type", "Output Shape", "Param #"] + (["Trainable"] if show_trainable else [])
    rows = []
    for depth, layer, trainable in _walk(net.layers, net.trainable):
        # tabulate strips leading spaces, so nesting is drawn rather than indented.
        row = [("│ " * (depth - 1) + "└ " if depth else "") + layer.name, type(layer).__name__,
               format_shape(layer.output_shape), f"{layer.count_params():,}"]
        if show_trainable:
            row.append("yes" if trainable else "no")
        rows.append(row)
    from tabulate import tabulate  # noqa: PLC0415 - 30 ms to import; training workers never need it

    table = tabulate(rows, headers=headers, tablefmt="simple", colalign=("left", "left", "left", "right")
                     + (("center",) if show_trainable else ()))
    total = net.count_params()
    trainable = net.count_params(trainable_only=True)
    title = f'Model: "{net.name}"' + (f"  input: {format_shape(net.input_shape)}" if net.input_shape else "")
    width = max(len(line) for line in table.splitlines()) if rows else len(title)
    lines = [title, "=" * width, table, "=" * width,
             f"Total params: {total:,}",
             f"Trainable params: {trainable:,}",
             f"Non-trainable params: {total - trainable:,}",
             "_" * width]
    if show_plan:
        from .execution import plan_for  # noqa: PLC0415 - summary stays below the planner

        lines += [str(plan_for(net)), "_" * width]
    return "\n".join(lines)
