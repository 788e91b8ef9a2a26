"""Entry point of a data-parallel training worker: ``python -m modularcnn.training.worker``.

Started by :class:`modularcnn.training.parallel.DataParallel`, which talks to it over stdin/stdout.
"""

import os
import sys

from modularcnn.training.parallel import worker_main

if __name__ == "__main__":
    worker_main(sys.stdin, sys.stdout)
    # Nothing is left to flush or save (every reply was flushed, the kernel unmaps the shared block):
    # skipping the interpreter's teardown lets the training process stop its workers without waiting.
    os._exit(0)
