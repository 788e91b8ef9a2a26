"""The ``summary()`` table: one row per layer with its output shape and parameter count."""

from tabulate import tabulate


def format_shape(shape):
    """``(28, 28, 1)`` -> ``"(None, 28, 28, 1)"``: per-sample shape with Keras's batch placeholder."""
    return "(" + ", ".join(["None"] + [str(d) for d in shape]) + ")"


def summary_text(net, show_trainable=None):
    """The summary of ``net`` as a string (see :meth:`modularcnn.Net.summary`)."""
    if show_trainable is None:
        show_trainable = any(not layer.trainable for layer in net.layers) or not net.trainable
    headers = ["Layer", "Type", "Output Shape", "Param #"] + (["Trainable"] if show_trainable else [])
    rows = []
    for layer in net.layers:
        row = [layer.name, type(layer).__name__, format_shape(layer.output_shape),
               f"{layer.count_params():,}"]
        if show_trainable:
            row.append("yes" if layer.trainable and net.trainable else "no")
        rows.append(row)
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
    return "\n".join(lines)
