"""Plots of training curves, predictions and confusion matrices (needs matplotlib).

matplotlib is an optional extra (``pip install modularcnn[plot]``): it is imported inside each
function, so ``import modularcnn`` works without it and only calling a plot raises ``ImportError``.
Every function returns the matplotlib ``Figure`` (shown by Jupyter, saved with ``fig.savefig``).
"""

import math

import numpy as np

INSTALL_HINT = "pip install modularcnn[plot]"


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(f"modularcnn's plots need matplotlib, which is not installed: "
                          f"{INSTALL_HINT} (or pip install matplotlib)") from error
    return plt


def _history_dict(history):
    """``{"loss": [...], "val_loss": [...], ...}`` from a History or its ``.history`` dict."""
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise ValueError(f"plot_history expects a History or its .history dict, got "
                         f"{type(history).__name__}")
    return logs


def plot_history(history, metrics=None, ax=None):
    """Plot loss and metric curves per epoch, training and validation, one panel per metric.

    Parameters
    ----------
    history : History or dict
        What ``fit`` returns, or its ``.history`` dict (``{"loss": [...], "val_loss": [...]}``).
    metrics : str or list of str, optional
        Figures to plot, e.g. ``["loss", "accuracy"]``; each panel shows the figure and its
        ``val_`` form when logged. Default: every logged figure except ``lr``, loss first.
    ax : matplotlib Axes or sequence of Axes, optional
        Where to draw, one Axes per metric; default: a new figure with the panels side by side.

    Returns
    -------
    matplotlib.figure.Figure
    """
    logs = _history_dict(history)
    if metrics is None:
        metrics = [key for key in logs if not key.startswith("val_") and key != "lr"]
        metrics.sort(key=lambda key: key != "loss")
    elif isinstance(metrics, str):
        metrics = [metrics]
    if not metrics:
        raise ValueError("plot_history: the history holds no figures to plot "
                         f"(keys: {sorted(logs) or 'none'})")
    missing = [m for m in metrics if m not in logs and f"val_{m}" not in logs]
    if missing:
        raise ValueError(f"plot_history: {missing} not in the history; logged: {sorted(logs)}")

    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    if ax is None:
        figure, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(np.atleast_1d(ax).ravel())
        if len(axes) != len(metrics):
            raise ValueError(f"plot_history: got {len(axes)} Axes for {len(metrics)} metrics "
                             f"{metrics}; pass one Axes per metric")
        figure = axes[0].figure
    for axis, metric in zip(axes, metrics):
        for key, label, style in ((metric, "train", "-o"), (f"val_{metric}", "validation", "--s")):
            values = logs.get(key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                axis.plot(epochs, values, style, label=label, markersize=3)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
        axis.set_ylabel(metric)
        axis.set_title(metric)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def _show_image(axis, image):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        axis.imshow(image, cmap="gray_r")  # dark strokes on white, as digits are drawn
    else:
        # Colour images: float data is taken as [0, 1], integers as 0..255.
        image = image / 255.0 if image.dtype.kind in "iu" else np.clip(image, 0, 1)
        axis.imshow(image)
    axis.set_xticks([])
    axis.set_yticks([])


def plot_predictions(model, x, y, n=25, class_names=None):
    """A grid of the first ``n`` images titled with predicted and true labels; mistakes in red.

    Parameters
    ----------
    model : Net
        Anything with ``predict(x) -> (N, K)`` class scores.
    x : array (N, H, W) or (N, H, W, C)
        Images as the model takes them (e.g. scaled to [0, 1]).
    y : array (N,)
        True class ids (or one-hot rows (N, K)).
    n : int
        Number of images shown (at most N), in a near-square grid.
    class_names : sequence of str, optional
        Names shown instead of class ids.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per image (grid cells beyond ``n`` are removed).
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim == 2:
        y = y.argmax(axis=1)
    if x.ndim not in (3, 4):
        raise ValueError(f"plot_predictions: expected images (N, H, W) or (N, H, W, C), got {x.shape}")
    if len(x) != len(y):
        raise ValueError(f"plot_predictions: x has {len(x)} images but y has {len(y)} labels")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"plot_predictions: n must be a positive int, got {n!r}")
    n = min(int(n), len(x))
    scores = np.asarray(model.predict(x[:n]))
    predicted = scores.argmax(axis=-1)

    def name(k):
        return str(class_names[k]) if class_names is not None else str(int(k))

    plt = _pyplot()
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    axes = axes.ravel()
    for i in range(n):
        wrong = predicted[i] != y[i]
        _show_image(axes[i], x[i])
        axes[i].set_title(f"{name(predicted[i])} (true {name(y[i])})", fontsize=8,
                          color="red" if wrong else "black")
        if wrong:
            for spine in axes[i].spines.values():
                spine.set_color("red")
                spine.set_linewidth(2)
    for axis in axes[n:]:
        figure.delaxes(axis)
    figure.suptitle(f"predicted (true): {int(np.sum(predicted != y[:n]))} of {n} wrong", fontsize=10)
    figure.tight_layout()
    return figure


def plot_confusion_matrix(cm, class_names=None, normalize=False, ax=None):
    """Show a confusion matrix (rows: true class, columns: predicted) with its counts written in.

    Parameters
    ----------
    cm : array (K, K)
        As from :func:`modularcnn.metrics.confusion_matrix`.
    class_names : sequence of K str, optional
    normalize : bool
        Divide each row by its total, so cells are per-class fractions.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"plot_confusion_matrix: expected a square (K, K) matrix, got {cm.shape}")
    k = cm.shape[0]
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"plot_confusion_matrix: {len(class_names)} class names for {k} classes")
    values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    plt = _pyplot()
    if ax is None:
        figure, ax = plt.subplots(figsize=(1 + 0.5 * k, 0.8 + 0.5 * k))
    else:
        figure = ax.figure
    image = ax.imshow(values, cmap="Blues")
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    labels = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    ax.set_xticks(range(k), labels=labels, rotation=45 if class_names is not None else 0,
                  ha="right" if class_names is not None else "center")
    ax.set_yticks(range(k), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = values.max() / 2 if values.size else 0
    for i in range(k):
        for j in range(k):
            text = f"{values[i, j]:.2f}" if normalize else f"{int(values[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if values[i, j] > threshold else "black")
    figure.tight_layout()
    return figure
