"""``History``: the per-epoch logs that ``fit`` returns."""

from .base import Callback


class History(Callback):
    """Records each epoch's logs: ``history.history["val_loss"]`` is a list with one value per epoch.

    ``interrupted`` tells whether Ctrl-C stopped training early.
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []
        #: True when Ctrl-C ended training before its last epoch.
        self.interrupted = False

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        keys = ", ".join(self.history)
        return f"<History epochs={len(self.epoch)} keys=[{keys}]>"
