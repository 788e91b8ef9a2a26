"""Dataset loaders: MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100, IDX and CSV files.

Each ``<dataset>.load_data(path=None)`` returns ``(x_train, y_train), (x_test, y_test)``
as uint8 arrays, like ``keras.datasets``. Files are searched in ``path``, then
``$MODULARCNN_DATA/<name>/``, then ``~/.cache/modularcnn/<name>/``, and downloaded into the
cache as a last resort (never when ``MODULARCNN_OFFLINE=1``).
"""

from . import cifar10, cifar100, fashion_mnist, mnist
from .csv import load_csv
from .errors import DatasetError
from .idx import load_idx, parse_idx, save_idx

__all__ = ["DatasetError", "load_idx", "parse_idx", "save_idx", "load_csv",
           "mnist", "fashion_mnist", "cifar10", "cifar100"]
