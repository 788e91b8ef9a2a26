"""``ModelCheckpoint``: save the network (or its weights) at the end of epochs, as Keras does."""

import math
import os
import string

from .. import validation
from ..errors import ModelFileError
from ..saving.model_io import file_info
from .monitoring import _Monitoring


class ModelCheckpoint(_Monitoring):
    """Save the model after every epoch, or only when ``monitor`` improves.

    Parameters
    ----------
    filepath : str or os.PathLike
        Where to save. May hold ``{epoch}`` (1-based, as in Keras) and any logged figure, with format
        specs: ``"ckpt/epoch{epoch:02d}-{val_loss:.4f}.h5"``. Missing folders are created.
    monitor : str
        The logged figure that decides what "best" means (``save_best_only``).
    save_best_only : bool
        Save only when ``monitor`` beats the best value so far. The best value is stored in the file,
        and read back when training starts again with the same (placeholder-free) ``filepath``: a
        resumed run does not overwrite a better model with a worse one (Keras forgets the best and
        does).
    save_weights_only : bool
        Write :meth:`Net.save_weights` files instead of whole models.
    mode : "auto", "min" or "max"
        Whether smaller or larger is better; "auto" picks "max" for accuracy-like names.
    verbose : 0 or 1
        1 prints a line whenever a file is written (or the best is kept).
    save_freq : "epoch" or int
        ``"epoch"`` saves at the end of every epoch; an int ``n`` every ``n`` training batches,
        counted across epochs (as in Keras), with the running training figures as the logs and
        ``{batch}`` (1-based, within the epoch) in ``filepath``; ``save_best_only`` then needs a
        training figure as ``monitor``.

    Every file is written atomically: a crash or Ctrl-C during a save leaves the previous checkpoint
    intact, and ``fit`` turns Ctrl-C into a clean stop after the current batch (without saving the
    unfinished epoch). ``last_path`` is the file written last.
    """

    writes_files = True  # under MPI, rank 0 alone writes

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, save_weights_only=False,
                 mode="auto", verbose=0, save_freq="epoch"):
        super().__init__(monitor, 0.0, mode)
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq < 1):
            raise ValueError(f"ModelCheckpoint: save_freq must be 'epoch' or a positive number of "
                             f"batches, got {save_freq!r}")
        if save_freq != "epoch" and save_best_only and monitor.startswith("val_"):
            raise ValueError(f"ModelCheckpoint: with save_freq={save_freq} batches, monitor "
                             f"{monitor!r} is only known at epoch ends; monitor a training figure "
                             "such as 'loss'")
        self.save_freq = save_freq
        self._batches_seen = 0
        self._epoch = 0
        self.filepath = validation.file_path(filepath, "filepath", "ModelCheckpoint")
        self.placeholders = _placeholders(self.filepath)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.verbose = verbose
        self.last_path = None

    def on_train_begin(self, logs=None):
        self.best = None
        if self.save_best_only and not self.placeholders:
            self.best = self._stored_best(self.filepath)

    def _stored_best(self, path):
        """The best score recorded in an existing checkpoint at ``path`` for this monitor and mode."""
        if not os.path.isfile(path):
            return None
        try:
            record = file_info(path)["checkpoint"] or {}
        except (ModelFileError, OSError) as error:
            if self.verbose:
                print(f"ModelCheckpoint: {path} exists but cannot be read, it will be replaced ({error})")
            return None
        best = record.get("best")
        if (record.get("monitor") != self.monitor or record.get("mode") != self.mode
                or isinstance(best, bool) or not isinstance(best, (int, float)) or math.isnan(best)):
            return None
        if self.verbose:
            print(f"ModelCheckpoint: resuming with the best {self.monitor} {best:.5f} "
                  f"(epoch {record.get('epoch')}) from {path}")
        return float(best)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_seen += 1
        if self._batches_seen >= self.save_freq:
            self._batches_seen = 0
            self._save(self._epoch, dict(logs or {}), batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, logs or {})

    def _save(self, epoch, logs, batch=None):
        path = self._format(epoch, logs, batch)
        # A mid-epoch file holds `epoch` finished epochs and `batch` batches of the next.
        record = {"epoch": epoch + 1 if batch is None else epoch, "monitor": self.monitor,
                  "mode": self.mode}
        if batch is not None:
            record["batch"] = batch + 1
        if self.save_best_only:
            value = self._current(logs)
            if not self._improved(value):
                if self.verbose:
                    best = "nothing" if self.best is None else f"{self.best:.5f}"
                    print(f"\nEpoch {epoch + 1}: {self.monitor} ({value:.5f}) did not improve from {best}")
                return
            previous, self.best = self.best, value
            record["best"] = value
            message = (f"{self.monitor} improved from "
                       f"{'nothing' if previous is None else f'{previous:.5f}'} to {value:.5f}, ")
        else:
            value = logs.get(self.monitor)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                record["value"] = float(value)
            message = ""
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        # Through the model's own methods, as Keras's ModelCheckpoint does: a network class that
        # saves differently is saved its way, and saving never needs to know about callbacks.
        save = self.model.save_weights if self.save_weights_only else self.model.save
        save(path, epoch=record["epoch"], checkpoint=record)
        self.last_path = path
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: {message}saving {'weights' if self.save_weights_only else 'model'}"
                  f" to {path}")

    def _format(self, epoch, logs, batch=None):
        values = {key: value for key, value in logs.items() if key not in ("epoch", "batch")}
        if batch is not None:
            values["batch"] = batch + 1
        try:
            return self.filepath.format(epoch=epoch + 1, **values)
        except KeyError as error:
            raise ValueError(
                f"ModelCheckpoint: filepath {self.filepath!r} names {error.args[0]!r}, which is not "
                f"logged; available: epoch, {', '.join(sorted(values))}"
            ) from None
        except (ValueError, IndexError, TypeError) as error:
            raise ValueError(
                f"ModelCheckpoint: cannot format filepath {self.filepath!r}: {error}") from None


def _placeholders(filepath):
    """The ``{name}`` fields of ``filepath``; ValueError for positional fields or unbalanced braces."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(filepath) if field is not None]
    except ValueError as error:
        raise ValueError(f"ModelCheckpoint: bad filepath {filepath!r}: {error}") from None
    for field in fields:
        if not field or field.isdigit():
            raise ValueError(f"ModelCheckpoint: filepath {filepath!r} has a positional field {{{field}}}; "
                             "use names such as {epoch} or {val_loss}")
    return fields
