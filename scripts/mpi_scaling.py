"""Epoch time of the Keras MNIST example CNN on 1 or more MPI ranks (one BLAS thread each), and the
share of it spent in the gradient all-reduce; run it under mpirun with different -n::

    OMP_NUM_THREADS=1 mpirun -n 1 python scripts/mpi_scaling.py
    OMP_NUM_THREADS=1 mpirun -n 2 python scripts/mpi_scaling.py
    OMP_NUM_THREADS=1 python scripts/mpi_scaling.py --local 2     # the local worker pool, for comparison

Each run times a second epoch (the first warms up) of --samples MNIST images in batches of 64.
"""

import argparse
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
    parser.add_argument("--local", type=int, default=0, help="use the local worker pool of N instead")
    args = parser.parse_args()
    (x, y), _ = mnist.load_data()
    x, y = x[:args.samples, :, :, None] / 255.0, y[:args.samples]
    net = keras_example_cnn()
    if args.local:
        from modularcnn.training.strategies import LocalWorkers
        strategy, label, chief = LocalWorkers(args.local), f"local pool, {args.local} workers", True
    else:
        from modularcnn.training.strategies.mpi import MPIStrategy
        strategy = MPIStrategy()
        label, chief = f"MPI, {strategy.workers} rank(s)", strategy.is_chief
    net.fit(x, y, epochs=1, batch_size=64, strategy=strategy, verbose=0)   # warm-up
    before = getattr(strategy, "allreduce_seconds", 0.0)
    started = time.perf_counter()
    net.fit(x, y, epochs=1, batch_size=64, strategy=strategy, verbose=0)
    seconds = time.perf_counter() - started
    reduced = getattr(strategy, "allreduce_seconds", 0.0) - before
    if chief:
        print(f"{label}: epoch of {len(x):,} images {seconds:.2f} s, all-reduce {reduced:.2f} s "
              f"({100 * reduced / seconds:.0f}%)")


if __name__ == "__main__":
    main()
