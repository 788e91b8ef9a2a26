"""What callbacks that watch one logged figure share: its direction (``mode``) and "improved"."""

import math

from .. import validation
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
        owner = type(self).__name__
        if not isinstance(monitor, str) or not monitor:
            validation.fail(owner, "monitor", "the name of a logged figure such as 'val_loss'", monitor)
        self.monitor = monitor
        self.min_delta = abs(validation.real(min_delta, "min_delta", owner))
        self.mode = _monitor_mode(monitor, mode)
        self.best = None

    def check_monitor(self):
        """Refuse, at the start of ``fit``, a monitored name that the epoch logs will not hold.

        ``fit`` lists the names it will log in ``params["metrics"]``; without that list (a caller
        driving the hooks itself) the check waits for the first epoch's logs.
        """
        logged = self.params.get("metrics")
        if logged is not None and self.monitor not in logged:
            raise validation.ArgumentError(self._missing_message(logged))

    def _missing_message(self, logged):
        return (f"{type(self).__name__} monitors {self.monitor!r}, which is not logged; "
                f"available: {', '.join(sorted(logged)) or 'none'} (val_ figures need validation data)")

    def _current(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(self._missing_message(logs or {}))
        return float(value)

    def _improved(self, value):
        if self.best is None:
            return not math.isnan(value)
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta
