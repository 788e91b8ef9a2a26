"""Ctrl-C during training: the first press stops after the current batch, the second at once.

``fit`` runs inside :func:`stop_on_interrupt`. The first SIGINT only sets a flag, which the loop reads
after each batch, so the weights are never left half-updated. Code that waits on other processes
(a worker pool) asks :func:`seconds_since_interrupt` and gives up when a batch cannot finish in a few
seconds, and a second Ctrl-C raises ``KeyboardInterrupt`` wherever the program is: Ctrl-C always gets
out, even of a step whose worker is stopped or hung.
"""

import contextlib
import signal
import threading
import time

_requested_at = []  # the monotonic time of the first Ctrl-C of the innermost stop_on_interrupt
_states = []  # the state dict of each stop_on_interrupt, innermost last


def seconds_since_interrupt():
    """Seconds since Ctrl-C was first pressed during the current ``fit``, or None."""
    return time.monotonic() - _requested_at[-1] if _requested_at and _requested_at[-1] else None


def request_stop():
    """Make the innermost ``fit`` stop after its current batch, as a first Ctrl-C does (an MPI job
    calls it on every rank after the same step, when any rank was interrupted)."""
    if _states:
        _states[-1]["interrupted"] = True
        if _requested_at[-1] is None:
            _requested_at[-1] = time.monotonic()


@contextlib.contextmanager
def stop_on_interrupt():
    """While training, the first Ctrl-C sets ``state["interrupted"]``; a second raises."""
    state = {"interrupted": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        if state["interrupted"]:
            raise KeyboardInterrupt
        state["interrupted"] = True
        _requested_at[-1] = time.monotonic()

    _requested_at.append(None)
    _states.append(state)
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested_at.pop()
        _states.pop()
