"""Training strategies: where ``fit`` and ``train_on_batch`` run each step (see :mod:`.base`).

- :class:`SingleProcess` (``"single"``): this process.
- :class:`LocalWorkers` (``"local"``): each batch split across worker processes on this machine.
- ``MPIStrategy`` (``"mpi"``, in :mod:`.mpi`, imported on request): each batch split across MPI ranks.

:func:`choose_strategy` holds the rules ``fit(strategy=None, workers="auto")`` follows.
"""

from .base import DataParallelStrategy, Strategy, backpropagate_rows, install_batch_reducer, split_rows
from .local import LocalWorkers
from .policy import available_cores, choose_strategy, get, resolve_workers
from .pool import close_pool, pool_of
from .single import SingleProcess

__all__ = ["Strategy", "DataParallelStrategy", "SingleProcess", "LocalWorkers", "choose_strategy",
           "get", "resolve_workers", "available_cores", "pool_of", "close_pool",
           "backpropagate_rows", "install_batch_reducer", "split_rows"]
