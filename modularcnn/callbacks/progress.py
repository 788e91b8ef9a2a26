"""Progress reporting for ``fit``: a live tqdm bar in terminals and notebooks, plain lines elsewhere.

``verbose=1`` shows a tqdm bar per epoch with the running loss and metrics, then one line with the
epoch's figures including validation. When the output is not a terminal (a log file, CI), a bar would
write carriage returns and hundreds of redraws; there the bar is replaced by at most
``LINES_PER_EPOCH`` plain progress lines per epoch. ``verbose=2`` prints one line per epoch only.
"""

import sys
import time

from .. import validation
from .base import Callback

LINES_PER_EPOCH = 4


def format_logs(logs):
    """``"loss: 0.1234 - accuracy: 0.9612 - lr: 0.001"``."""
    parts = []
    for key, value in logs.items():
        parts.append(f"{key}: {value:.4g}" if key == "lr" else f"{key}: {value:.4f}")
    return " - ".join(parts)


def _in_notebook():
    try:
        from IPython import get_ipython  # noqa: PLC0415 - only present in notebooks
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _interactive(stream):
    try:
        return stream.isatty() or _in_notebook()
    except (AttributeError, ValueError):
        return False


class ProgressLogger(Callback):
    """Prints training progress; ``fit`` adds one for ``verbose`` 1 or 2."""

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose = validation.integer(verbose, "verbose", "ProgressLogger", minimum=0, maximum=2)
        if stream is not None and not callable(getattr(stream, "write", None)):
            validation.fail("ProgressLogger", "stream", "None or a text stream with write()", stream)
        self.stream = stream

    @property
    def _out(self):
        return self.stream or sys.stdout

    def on_train_begin(self, logs=None):
        self.interactive = self.verbose == 1 and _interactive(self._out)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.started = time.perf_counter()
        self.steps = self.params.get("steps", 0)
        self.next_line = 1
        self.bar = None
        if self.verbose == 1 and self.interactive:
            # Imported here: tqdm.auto picks the notebook widget, and warns on import where
            # ipywidgets is missing, which only matters once a bar is actually shown.
            from tqdm.auto import tqdm  # noqa: PLC0415

            self.bar = tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.params.get('epochs')}",
                            unit="batch", file=self._out, leave=True, dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.verbose != 1:
            return
        running = {k: v for k, v in (logs or {}).items() if k not in ("batch", "size")}
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(format_logs(running), refresh=False)
            return
        done = batch + 1
        # A few evenly spaced lines per epoch: bounded output in logs, whatever the batch count.
        if self.steps and done >= self.next_line * self.steps / LINES_PER_EPOCH and done < self.steps:
            while self.next_line * self.steps / LINES_PER_EPOCH <= done:
                self.next_line += 1
            print(f"Epoch {self.epoch + 1}/{self.params.get('epochs')} {done}/{self.steps} "
                  f"- {format_logs(running)}", file=self._out, flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
        seconds = time.perf_counter() - self.started
        print(f"Epoch {epoch + 1}/{self.params.get('epochs')} - {seconds:.1f}s - "
              f"{format_logs(logs or {})}", file=self._out, flush=True)
