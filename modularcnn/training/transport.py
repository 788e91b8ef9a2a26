"""The line protocol between the training process and its worker processes, both ends.

Each worker is a child process (``python -m modularcnn.training.worker``) reading commands on its stdin
and answering on its stdout, one short line each; the arrays themselves live in shared memory
(:mod:`modularcnn.training.shared`). The training process writes:

- a JSON object (a line starting with ``{``): the set-up of :mod:`modularcnn.training.replica`
  (network, loss, execution options, shared block); answered ``ready``;
- ``step LO HI ROWS``: forward, loss and backward on rows ``LO:HI`` of a batch of ``ROWS``; answered
  ``done``, after any number of ``reduce N`` / ``reduced`` exchanges (a layer's whole-batch sums);
- ``update LR ITERATIONS BUSY``: with a sharded update (:mod:`.strategies.sharded_update`), sum the
  gradients of the busy workers (``BUSY``, comma-separated) over this worker's ranges and run the
  optimizer step there at learning rate ``LR``; answered ``updated``;
- ``plan``: answered ``plan [step kinds]``, the steps the worker's network runs;
- ``exit``: the worker exits. An input that ends without it means the training process died.

Any command may be answered ``error <JSON text>``. While a command runs the worker sends ``alive``
every :data:`HEARTBEAT_SECONDS` from a second thread, so a worker that is stopped (SIGSTOP) or hung
(even inside C code holding the interpreter lock) falls silent, and the training process gives up
after :data:`SILENCE_SECONDS` instead of blocking forever. The end of its input tells a worker to exit.
"""

import json
import os
import select
import subprocess
import sys
import threading
import time

from .interrupt import seconds_since_interrupt

#: How a worker process is started (tests replace it to simulate failing workers).
WORKER_COMMAND = (sys.executable, "-m", "modularcnn.training.worker")
#: A busy worker says ``alive`` this often.
HEARTBEAT_SECONDS = 1.0
#: A busy worker silent for this long is stopped or hung: training raises :class:`WorkerTimeout`.
SILENCE_SECONDS = 30.0
#: A starting worker (a Python interpreter importing NumPy and modularcnn: 0.15 s on an idle machine,
#: seconds on a loaded one) must be ready within this.
START_SECONDS = 120.0
#: After Ctrl-C, the current batch gets this long to finish before the wait raises KeyboardInterrupt.
INTERRUPT_GRACE_SECONDS = 2.0
#: How long one wait for a worker sleeps before it looks at the clock and for Ctrl-C.
_POLL_SECONDS = 0.25
#: How long a worker polls for its next command before it blocks (see ``LineReader``). It covers the
#: other workers finishing and the optimizer step: with 2 ms, a busy machine often ran past it, and
#: sending the next step cost the main process 0.3 ms of waking workers (cnn32: 13.5 against 13.1 ms
#: per step with 5 ms).
SPIN_SECONDS = 0.005
#: glibc's allocator gives freed memory at the top of its heap back to the system once more than a
#: threshold is free, and each multi-megabyte array of the next step then takes a page fault per
#: 4 KiB when first written: measured, 740 faults and an eighth of a cnn32 step. A worker's arrays
#: have the same sizes every step, so it keeps them (arrays below 32 MiB come from the heap, which is
#: trimmed only above 256 MiB free). Other allocators ignore these variables.
_MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
                    "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20)}
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                         "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


#: The environment variable that tells a worker its training process's id.
PARENT_VARIABLE = "MODULARCNN_TRAINING_PID"


class WorkerError(RuntimeError):
    """A worker process failed or exited; the message carries its error."""


class WorkerTimeout(WorkerError):
    """A worker sent nothing for :data:`SILENCE_SECONDS` (or did not start within
    :data:`START_SECONDS`): it is stopped or hung."""


class LineReader:
    """Lines from a file descriptor, with a timeout.

    ``spin`` > 0 polls for that long before sleeping in ``select``: the next command usually comes
    within a millisecond, and a process that slept takes 0.1-0.3 ms to wake (measured in a 2-core VM),
    a tenth of a LeNet step. Workers spin; the training process does not.
    """

    def __init__(self, fd, spin=0.0):
        self.fd, self.buffer = fd, b""
        self.spin = spin if os.name == "posix" else 0
        self.waits = os.name == "posix"  # select() works on pipes on POSIX only

    def readline(self, timeout=None):
        """The next line without its newline, ``""`` at the end of input, or None after ``timeout``
        seconds without a complete line."""
        while b"\n" not in self.buffer:
            if self.spin:
                deadline = time.perf_counter() + self.spin
                while not select.select([self.fd], [], [], 0)[0] and time.perf_counter() < deadline:
                    os.sched_yield()  # let the training process run its update meanwhile
            if timeout is not None and self.waits and not select.select([self.fd], [], [], timeout)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return ""
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


class WorkerProcess:
    """The training process's end: one worker process and the line protocol on its pipes."""

    def __init__(self, index):
        self.index = index
        env = dict(os.environ)
        env.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))  # one core per worker
        env.update(_MALLOC_SETTINGS)
        # Known before the worker's first line runs: it may be handed to another parent by then.
        env[PARENT_VARIABLE] = str(os.getpid())
        options = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        # Its own session: Ctrl-C reaches only this process, which stops after the current batch.
        try:
            self.process = subprocess.Popen(list(WORKER_COMMAND), stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, env=env, **options)
        except OSError as error:
            raise WorkerError(f"worker {index} could not be started: {error}") from None
        self.pid = self.process.pid
        self._reader = LineReader(self.process.stdout.fileno())

    def send(self, message):
        try:
            self.process.stdin.write((message + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._raise_exited()

    def receive(self, silence=None):
        """The worker's next answer (``alive`` beats are skipped).

        Raises :class:`WorkerError` with the worker's message for ``error ...`` or when it exited,
        :class:`WorkerTimeout` when it sent nothing for ``silence`` seconds (default
        :data:`SILENCE_SECONDS`), and ``KeyboardInterrupt`` when Ctrl-C was pressed more than
        :data:`INTERRUPT_GRACE_SECONDS` ago.
        """
        silence = SILENCE_SECONDS if silence is None else silence
        heard = time.monotonic()
        while True:
            line = self._reader.readline(timeout=_POLL_SECONDS)
            if line is None:
                waited = seconds_since_interrupt()
                if waited is not None and waited > INTERRUPT_GRACE_SECONDS:
                    raise KeyboardInterrupt
                if time.monotonic() - heard > silence:
                    raise WorkerTimeout(
                        f"worker {self.index} (process {self.pid}) sent nothing for {silence:.0f} s: "
                        "it is stopped or hung; the workers were stopped and the weights kept")
                continue
            heard = time.monotonic()
            if line == "alive":
                continue
            if not line:
                self._raise_exited()
            if line.startswith("error "):
                raise WorkerError(f"worker {self.index} failed: {json.loads(line[6:])}")
            return line

    def _raise_exited(self):
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = "unknown (it closed its output but is still running)"
        raise WorkerError(f"worker {self.index} exited unexpectedly with code {code}")


def stop_processes(workers, wait_seconds=2.0):
    """End ``workers`` quietly: tell them to exit, kill those still there after ``wait_seconds``
    (stopped or hung ones), and reap them all. Never raises."""
    for worker in workers:
        try:
            # "exit" then the end of input: an input that ends without "exit" means this process
            # died, and the worker then deletes the shared files this process left.
            worker.process.stdin.write(b"exit\n")
            worker.process.stdin.close()
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + wait_seconds
    for worker in workers:
        try:
            worker.process.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            worker.process.kill()  # SIGKILL ends a stopped process too
            worker.process.wait()
        except OSError:
            pass
        try:
            worker.process.stdout.close()
        except OSError:
            pass


class ParentChannel:
    """The worker's end: commands from stdin, answers to stdout, and the heartbeat while busy."""

    def __init__(self, stdin, stdout):
        self._reader = LineReader(stdin.fileno(), SPIN_SECONDS)
        self._stdout = stdout
        self._lock = threading.Lock()
        self._busy = False
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()

    def readline(self):
        return self._reader.readline()

    def busy(self):
        """From now until the next :meth:`reply`, say ``alive`` every :data:`HEARTBEAT_SECONDS`."""
        self._busy = True

    def reply(self, text, busy=False):
        """Send one answer; ``busy=True`` keeps the heartbeat going (a ``reduce`` in mid-step)."""
        with self._lock:
            self._busy = busy
            self._stdout.write(text + "\n")
            self._stdout.flush()

    def _beat(self):
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self._lock:
                if not self._busy:
                    continue
                try:
                    self._stdout.write("alive\n")
                    self._stdout.flush()
                except (OSError, ValueError):
                    return  # the training process is gone; the main thread sees its input end
