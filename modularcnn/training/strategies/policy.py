"""Which strategy ``fit`` uses: :func:`choose_strategy`, the one place the rules live.

``fit(strategy=None, workers="auto")`` trains with :class:`~.local.LocalWorkers` on every core when
all of these hold, and in this process (:class:`~.single.SingleProcess`) otherwise::

    use_workers = (cores >= 2                                   # a second core to use
                   and batch_size // AUTO_MIN_ROWS >= 2         # rows enough for two workers
                   and (pool_of(net) or steps >= AUTO_MIN_STEPS) # workers running, or worth starting
                   and not unsupported_reason(net))             # the network can be rebuilt in one

``workers=1`` always trains here; ``workers=N`` uses N workers (never more than the batch has rows)
and refuses networks that cannot be split, and counts above :data:`MAX_WORKERS_PER_CORE` per core.
"""

import numbers
import os

from ..replica import unsupported_reason
from ..transport import BLAS_THREAD_VARIABLES
from .pool import pool_of

#: ``workers="auto"`` starts workers for a fit of at least this many batches (a pool already running
#: serves any fit). Measured: starting two workers (the pool's first ``prepare``) takes 0.16 s on an
#: idle 2-core machine and 0.64 s on today's loaded shared one; on an idle machine two workers save
#: about 1 ms of a LeNet step (batch 32: ~2.3 ms in one process), so one fit pays the start after
#: ~160 steps. The pool now stays with the network, so later fits pay nothing (a second 20-step LeNet
#: fit: 0.21-0.24 s against 0.90 s when every fit started its workers), hence a threshold below that.
AUTO_MIN_STEPS = 100
#: ... and only while every worker gets at least this many rows of a batch.
AUTO_MIN_ROWS = 16
#: ``workers=N`` above this many per CPU core is refused: more processes than cores only take turns
#: (and ``workers=1000`` would start a thousand interpreters).
MAX_WORKERS_PER_CORE = 4


def available_cores():
    """CPU cores this process may use: ``OMP_NUM_THREADS`` (or the BLAS's own variable) when set,
    else the CPUs it is allowed to run on."""
    for variable in BLAS_THREAD_VARIABLES[:3]:
        value = os.environ.get(variable, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_worker_count(workers):
    """``workers`` as an int in ``[1, MAX_WORKERS_PER_CORE * cores]``, or a ValueError."""
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise ValueError(f"workers must be 'auto' or a positive int, got {workers!r}")
    limit = MAX_WORKERS_PER_CORE * max(available_cores(), os.cpu_count() or 1)
    if workers > limit:
        raise ValueError(f"workers={workers} is more than this machine can run usefully: at most "
                         f"{limit} ({MAX_WORKERS_PER_CORE} per CPU core); one per core is fastest")
    return int(workers)


def resolve_workers(net, workers, batch_size, steps):
    """The number of worker processes ``fit`` uses: 0 (train here) or at least 2.

    ``workers`` is ``"auto"`` (see the module docstring), 1 (this process only) or an int >= 2
    (raises ``ValueError`` when the network cannot be split).
    """
    if workers == "auto":
        cores = min(available_cores(), batch_size // AUTO_MIN_ROWS)
        running = pool_of(net)
        if cores < 2 or (running is None and steps < AUTO_MIN_STEPS) or unsupported_reason(net):
            return 0
        return running.size if running is not None and running.size <= cores else cores
    workers = check_worker_count(workers)
    if workers == 1:
        return 0
    reason = unsupported_reason(net)
    if reason:
        raise ValueError(f"workers={workers}: this network trains in one process only: {reason}")
    return workers


def get(identifier, workers="auto"):
    """A strategy from a name (``"single"``, ``"local"``, ``"mpi"``) or an instance (returned as it is).

    ``"local"`` uses ``workers`` processes, one per core when that is ``"auto"``; ``"mpi"`` one
    participant per rank of ``MPI.COMM_WORLD`` (needs the ``mpi`` extra), each with ``workers`` local
    worker processes when that is a number (none for ``"auto"``: start one rank per core).
    """
    from .base import Strategy  # noqa: PLC0415
    from .local import LocalWorkers  # noqa: PLC0415
    from .single import SingleProcess  # noqa: PLC0415

    if isinstance(identifier, Strategy):
        return identifier
    names = {SingleProcess.name: SingleProcess, LocalWorkers.name: LocalWorkers, "mpi": None}
    if not isinstance(identifier, str) or identifier.lower() not in names:
        raise ValueError(f"strategy must be a Strategy or one of {sorted(names)}, got {identifier!r}")
    if identifier.lower() == SingleProcess.name:
        return SingleProcess()
    if identifier.lower() == "mpi":
        from .mpi import MPIStrategy  # noqa: PLC0415 - mpi4py is imported only when asked for

        return MPIStrategy(local_workers=1 if workers == "auto" else workers)
    return LocalWorkers(available_cores() if workers == "auto" else workers)


def choose_strategy(net, strategy=None, workers="auto", batch_size=32, steps=0):
    """The strategy ``fit`` trains ``net`` with, for ``steps`` batches of at most ``batch_size`` rows.

    ``strategy`` (a :class:`~.base.Strategy` or its name) wins; otherwise ``workers`` decides as the
    module docstring says. ``workers`` other than "auto" goes with ``strategy="local"`` only (the
    count of workers); with another strategy it is refused.
    """
    from .local import LocalWorkers  # noqa: PLC0415
    from .single import SingleProcess  # noqa: PLC0415

    if strategy is not None:
        if workers != "auto" and not (isinstance(strategy, str) and strategy.lower() in ("local", "mpi")):
            raise ValueError(f"give strategy={strategy!r} or workers={workers!r}, not both "
                             "(workers= sets the count of strategy='local', and the local workers "
                             "of each rank of strategy='mpi'; MPIStrategy(local_workers=N) is the "
                             "instance's form)")
        chosen = get(strategy, workers)
        reason = chosen.unsupported_reason(net)
        if reason:
            raise ValueError(f"strategy {chosen!r} cannot train this network: {reason}")
        return chosen
    count = resolve_workers(net, workers, batch_size, steps)
    return LocalWorkers(count) if count else SingleProcess()
