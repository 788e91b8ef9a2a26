"""What callbacks that watch one logged figure share: its direction (``mode``) and "improved"."""

import math

from .base import Callback


def _monitor_mode(monitor, mode):
    """``"min"`` or ``"max"``: accuracy-like figures improve upwards, losses downwards."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if any(word in monitor for word in ("acc", "auc", "precision", "recall")) else "min"


class _Monitoring(Callback):
    """Shared by callbacks that watch one logged figure for improvement."""

    def __init__(self, monitor, min_delta, mode):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.mode = _monitor_mode(monitor, mode)
        self.best = None

    def _current(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            available = ", ".join(sorted(logs or {})) or "none"
            raise ValueError(
                f"{type(self).__name__} monitors {self.monitor!r}, which is not logged; "
                f"available: {available} (val_ figures need validation data)"
            )
        return float(value)

    def _improved(self, value):
        if self.best is None:
            return not math.isnan(value)
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta
