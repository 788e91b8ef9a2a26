"""``EarlyStopping``: end training when a logged figure stops improving."""

from .. import validation
from .monitoring import _Monitoring


class EarlyStopping(_Monitoring):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs in a row.

    With ``restore_best_weights=True`` the weights of the best epoch are put back when training ends —
    whether it stopped early or ran to its last epoch (Keras restores only in the first case, a
    well-known surprise).
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0, verbose=0):
        super().__init__(monitor, min_delta, mode)
        self.patience = validation.non_negative_int(patience, "patience", "EarlyStopping")
        self.baseline = validation.real(baseline, "baseline", "EarlyStopping", allow_none=True)
        self.restore_best_weights = validation.boolean(restore_best_weights, "restore_best_weights",
                                                       "EarlyStopping")
        self.start_from_epoch = validation.non_negative_int(start_from_epoch, "start_from_epoch",
                                                            "EarlyStopping")
        self.verbose = verbose
        self.wait = 0
        self.stopped_epoch = None
        self.best_epoch = None
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.check_monitor()
        self.wait = 0
        self.best = self.baseline
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        value = self._current(logs)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch is not None and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping "
                  f"(best {self.monitor} {self.best:.4f} at epoch {self.best_epoch + 1})")
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            if self.verbose:
                print(f"Restored the weights of epoch {self.best_epoch + 1}")
