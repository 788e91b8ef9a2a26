"""Entry point of a data-parallel training worker: ``python -m modularcnn.training.worker``.

Started by :class:`modularcnn.training.parallel.DataParallel`, which talks to it over stdin/stdout.
"""

import sys

from modularcnn.training.parallel import worker_main

if __name__ == "__main__":
    # Binary-safe line I/O; the protocol is plain ASCII lines.
    worker_main(sys.stdin, sys.stdout)
