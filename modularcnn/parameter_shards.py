"""Flat ranges of the parameters shared out among data-parallel workers, so that each runs the
optimizer step on its own share (:class:`~modularcnn.training.strategies.local.LocalWorkers`).

Why: in a data-parallel step the workers compute their gradients, then wait while one process sums
them and runs the optimizer over every parameter. For a dense-heavy network that serial part is
large (a 784-512-256-10 MLP: about 1.4 ms of Adam plus the sum, against 2 ms of forward and backward
per worker). Split by ranges, each worker sums and updates only its range, at the same time as the
others. Each element goes through exactly the same operations in the same order as in one process,
so the result is bit for bit the same.

(Threads in one process would not do: measured here, Adam's element-wise passes over 200k-element
halves took as long in two threads as the whole in one, the threads waiting for the GIL between
NumPy calls of about 50 microseconds each.)
"""

#: Fewer trainable elements than this in all are not split: the extra message to the workers costs
#: more than the update they would share (Adam takes about 2.5 ms per million float32 elements).
MIN_SHARDED_ELEMENTS = 1 << 17
#: An array is cut into ranges only if each range gets at least this many elements; smaller arrays
#: go to one worker whole.
MIN_RANGE_ELEMENTS = 1 << 15


def share_out(sizes, parts):
    """Share the elements of arrays whose sizes are ``sizes`` (``{key: element count}``) out among
    ``parts`` participants as flat ranges.

    Returns one list per participant (``parts`` lists) of ``(key, start, stop)`` ranges, together
    covering every element exactly once, in ``sizes``' order within each list; a participant may get
    none. With one part, or fewer than :data:`MIN_SHARDED_ELEMENTS` in all, returns None: not worth
    splitting.
    """
    if parts < 2 or sum(sizes.values()) < MIN_SHARDED_ELEMENTS:
        return None
    shares = [[] for _ in range(parts)]
    load = [0] * parts
    for key, size in sizes.items():
        pieces = min(parts, size // MIN_RANGE_ELEMENTS)
        if pieces >= 2:   # a large array: the least loaded participants get equal ranges of it
            bounds = [size * i // pieces for i in range(pieces + 1)]
            lightest = sorted(range(parts), key=load.__getitem__)[:pieces]
            for part, start, stop in zip(lightest, bounds, bounds[1:]):
                shares[part].append((key, start, stop))
                load[part] += stop - start
        else:             # a small one goes whole to the least loaded participant
            part = min(range(parts), key=load.__getitem__)
            shares[part].append((key, 0, size))
            load[part] += size
    return shares
