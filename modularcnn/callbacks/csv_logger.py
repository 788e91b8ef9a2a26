"""``CSVLogger``: one CSV row per epoch."""

import csv
import os

from .. import validation
from .base import Callback


class CSVLogger(Callback):
    """Append one row per epoch (``epoch`` and every logged figure) to a CSV file, flushed each epoch."""

    writes_files = True  # under MPI, rank 0 alone writes

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = validation.file_path(filename, "filename", "CSVLogger")
        if not (isinstance(separator, str) and len(separator) == 1):
            validation.fail("CSVLogger", "separator", "one character such as ','", separator)
        self.separator = separator
        self.append = validation.boolean(append, "append", "CSVLogger")
        self._file = None
        self._writer = None
        self._keys = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer = None
        self._keys = None
        self._header_written = exists

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writer is None:
            self._keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self._keys,
                                          delimiter=self.separator, extrasaction="ignore")
            if not self._header_written:
                self._writer.writeheader()
        self._writer.writerow({"epoch": epoch, **{k: logs.get(k, "") for k in self._keys}})
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None
