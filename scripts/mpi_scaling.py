"""Epoch time of the Keras MNIST example CNN on 1 or more MPI ranks (one BLAS thread each), and the
share of it spent in the gradient all-reduce; run it under mpirun with different -n::

    OMP_NUM_THREADS=1 mpirun -n 1 python scripts/mpi_scaling.py
    OMP_NUM_THREADS=1 mpirun -n 2 python scripts/mpi_scaling.py
    OMP_NUM_THREADS=1 python scripts/mpi_scaling.py --local 2     # the local worker pool, for comparison
    OMP_NUM_THREADS=1 python scripts/mpi_scaling.py --local 1     # one process, no MPI
    OMP_NUM_THREADS=1 mpirun -n 1 python scripts/mpi_scaling.py --workers 2   # 2 workers in a rank

After one warm-up epoch it times ``--repeats`` epochs (separate ``fit`` calls) of ``--samples`` MNIST
images in batches of 64, and prints each with the 1-minute load average when it ended (a shared
machine's other jobs change the figures), then the medians.
"""

import argparse
import os
import statistics
import time

from modularcnn import Net
from modularcnn.datasets import mnist
from modularcnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D


def keras_example_cnn():
    net = Net(input_shape=(28, 28, 1), seed=0)
    for layer in (Conv2D(32, 3, activation="relu"), MaxPooling2D(2), Conv2D(64, 3, activation="relu"),
                  MaxPooling2D(2), Flatten(), Dropout(0.5), Dense(10, activation="softmax")):
        net.add(layer)
    net.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    return net


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--local", type=int, default=0,
                        help="use the local worker pool of N instead (1: one process)")
    parser.add_argument("--workers", type=int, default=1, help="local workers per MPI rank")
    args = parser.parse_args()
    (x, y), _ = mnist.load_data()
    x, y = x[:args.samples, :, :, None] / 255.0, y[:args.samples]
    net = keras_example_cnn()
    if args.local:
        from modularcnn.training.strategies import LocalWorkers, SingleProcess
        strategy = LocalWorkers(args.local) if args.local > 1 else SingleProcess()
        label = f"local pool, {args.local} workers" if args.local > 1 else "one process"
        chief = True
    else:
        from modularcnn.training.strategies.mpi import MPIStrategy
        strategy = MPIStrategy(local_workers=args.workers)
        label, chief = f"MPI, {strategy.workers} rank(s)", strategy.is_chief
        if args.workers > 1:
            label += f" x {args.workers} local workers"
    net.fit(x, y, epochs=1, batch_size=64, strategy=strategy, verbose=0)   # warm-up
    epochs, shares = [], []
    for repeat in range(args.repeats):
        before = getattr(strategy, "allreduce_seconds", 0.0)
        started = time.perf_counter()
        net.fit(x, y, epochs=1, batch_size=64, strategy=strategy, verbose=0)
        seconds = time.perf_counter() - started
        reduced = getattr(strategy, "allreduce_seconds", 0.0) - before
        epochs.append(seconds)
        shares.append(reduced / seconds)
        if chief:
            print(f"{label}: epoch {repeat + 1} of {len(x):,} images {seconds:.2f} s, all-reduce "
                  f"{reduced:.2f} s ({100 * reduced / seconds:.0f}%), load average "
                  f"{os.getloadavg()[0]:.2f}", flush=True)
    if chief:
        print(f"{label}: median epoch {statistics.median(epochs):.2f} s, all-reduce "
              f"{100 * statistics.median(shares):.0f}%")


if __name__ == "__main__":
    main()
