"""``BackupAndRestore``: resume an interrupted ``fit`` from its last finished epoch, as Keras's."""

import os

from ..errors import ModelFileError
from .base import Callback

BACKUP_NAME = "latest.h5"


class BackupAndRestore(Callback):
    """Back the whole training state up after every epoch; a later ``fit`` resumes from it.

    At the end of each epoch the network is saved to ``backup_dir/latest.h5`` with
    :meth:`Net.save`: weights, optimizer state and the random generator's state, atomically (a
    crash during the save leaves the previous backup). When ``fit`` starts and a backup exists, it
    is loaded into the network (in place) and training continues with the epoch after it, so an
    interrupted run — an exception, a killed process, Ctrl-C — that is started again gives the
    weights the uninterrupted run gives (the same script: the same seed and data).

    When ``fit`` finishes (all epochs, or stopped by a callback such as EarlyStopping) the backup is
    deleted (``delete_checkpoint=True``, as in Keras); after Ctrl-C it is kept for the next run.

    Parameters
    ----------
    backup_dir : str or os.PathLike
        A folder for this training run only (created when missing).
    save_freq : "epoch"
        Keras's batch-count frequency, which resumes mid-epoch, is not supported.
    delete_checkpoint : bool, default True
    """

    writes_files = True

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise ValueError(f"BackupAndRestore: backup_dir must be a folder path, got {backup_dir!r}")
        if save_freq != "epoch":
            raise ValueError(f"BackupAndRestore: save_freq must be 'epoch' (backups every N batches "
                             f"are not supported), got {save_freq!r}")
        if not isinstance(delete_checkpoint, bool):
            raise ValueError(f"BackupAndRestore: delete_checkpoint must be True or False, got "
                             f"{delete_checkpoint!r}")
        self.backup_dir = os.fspath(backup_dir)
        if os.path.exists(self.backup_dir) and not os.path.isdir(self.backup_dir):
            raise ValueError(f"BackupAndRestore: backup_dir {self.backup_dir!r} is a file, not a folder")
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self.resumes_at = None
        self.restored_epoch = None

    @property
    def path(self):
        return os.path.join(self.backup_dir, BACKUP_NAME)

    def on_train_begin(self, logs=None):
        self.resumes_at = self.restored_epoch = None
        if not os.path.isfile(self.path):
            return
        from ..saving import file_info, load_model  # noqa: PLC0415 - saving imports the networks

        try:
            saved = load_model(self.path)
            epoch = file_info(self.path)["epoch"]
        except (ModelFileError, OSError, KeyError) as error:
            raise ModelFileError(f"BackupAndRestore: the backup {self.path} cannot be restored "
                                 f"({error}); delete it to start afresh") from None
        if saved.get_config()["layers"] != self.model.get_config()["layers"]:
            raise ModelFileError(f"BackupAndRestore: the backup {self.path} holds another network; "
                                 "give each training run its own backup_dir")
        self.model.restore_state_from(saved)
        self.resumes_at = self.restored_epoch = int(epoch)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        self.model.save(self.path, epoch=epoch + 1)

    def on_train_end(self, logs=None):
        history = getattr(self.model, "history", None)
        if self.delete_checkpoint and not getattr(history, "interrupted", False) \
                and os.path.isfile(self.path):
            os.remove(self.path)
