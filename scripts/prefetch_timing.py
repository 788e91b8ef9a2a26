"""How much background prefetching hides: an epoch over a Sequence whose ``__getitem__`` sleeps
(standing in for disk or decoding time) against the compute alone and the loading alone.

    python scripts/prefetch_timing.py [--sleep-ms 5] [--batches 200] [--repeat 3]

Prints, for each way of running, the median seconds per epoch. With prefetching an epoch should take
about max(compute, load); without it (the same fit with the read-ahead window set to zero, as a
loader without a background thread would run) about their sum.
"""

import argparse
import statistics
import time

import numpy as np

from modularcnn import Net
from modularcnn.layers import Conv2D, Dense, Flatten, MaxPooling2D
from modularcnn.training import prefetch
from modularcnn.utils import Sequence


class SleepySequence(Sequence):
    """``batches`` batches of ``batch_size`` 28x28 images; each ``__getitem__`` sleeps first."""

    def __init__(self, x, y, batch_size, sleep_s, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size, self.sleep_s = x, y, batch_size, sleep_s

    def __len__(self):
        return len(self.x) // self.batch_size

    def __getitem__(self, index):
        time.sleep(self.sleep_s)
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[rows], self.y[rows]


def network():
    net = Net(input_shape=(28, 28, 1), seed=0)
    for layer in (Conv2D(8, 3, activation="relu"), MaxPooling2D(2), Flatten(),
                  Dense(10, activation="softmax")):
        net.add(layer)
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return net


def timed(run, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep-ms", type=float, default=5.0)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.batches * args.batch_size
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, n)
    sleepy = SleepySequence(x, y, args.batch_size, args.sleep_ms / 1000)
    net = network()
    net.fit(x[:args.batch_size * 4], y[:args.batch_size * 4], epochs=1, verbose=0)  # warm up

    # One process throughout (workers=1), so only the overlap of loading and computing differs.
    compute = timed(lambda: net.fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=False,
                                    verbose=0, workers=1), args.repeat)
    load = timed(lambda: [sleepy[i] for i in range(len(sleepy))], args.repeat)
    prefetched = timed(lambda: net.fit(sleepy, epochs=1, shuffle=False, verbose=0, workers=1), args.repeat)

    original = prefetch.Loader.__init__

    def no_read_ahead(self, source):
        original(self, source)
        self.depth = 0  # take each batch only when the step asks for it: no overlap

    prefetch.Loader.__init__ = no_read_ahead
    try:
        serial = timed(lambda: net.fit(sleepy, epochs=1, shuffle=False, verbose=0, workers=1), args.repeat)
    finally:
        prefetch.Loader.__init__ = original

    print(f"{args.batches} batches of {args.batch_size}, __getitem__ sleeps {args.sleep_ms:g} ms "
          f"(medians of {args.repeat}, seconds per epoch)")
    print(f"  compute alone (in-memory arrays)      {compute:6.3f}")
    print(f"  loading alone (the Sequence)          {load:6.3f}")
    print(f"  fit on the Sequence, prefetching      {prefetched:6.3f}   "
          f"max(compute, load) = {max(compute, load):.3f}")
    print(f"  fit on the Sequence, no read-ahead    {serial:6.3f}   "
          f"compute + load = {compute + load:.3f}")


if __name__ == "__main__":
    main()
