"""Named NumPy arrays in one block of memory that several processes map at once.

The block is a temporary file (in ``/dev/shm`` where it exists, so it never touches a disk) mapped with
``mmap``: the creating process and every process that attaches by path see the same bytes, so writing
an array in one process is reading it in the others, with no copy and no serialisation. Used by
data-parallel training (:mod:`modularcnn.training.strategies.local`) for the weights, the batch and
the gradients.

Nothing may be left behind, even when the creating process is killed. The creator deletes the file as
soon as every worker has mapped it (the mappings stay valid), and the file's name carries the
creator's process id (``modularcnn-<pid>-*.shared``), so that a worker whose parent died — its input
ended — deletes every file of that parent (:func:`remove_files_of`), including one created while the
workers were still starting.
"""

import glob
import math
import mmap
import os
import tempfile

import numpy as np

_ALIGN = 64  # bytes: every array starts on a cache line


def _layout(specs):
    """``[(name, shape, dtype, offset)]`` and the total size for ``specs`` = ``[(name, shape, dtype)]``."""
    placed, offset = [], 0
    for name, shape, dtype in specs:
        offset = -(-offset // _ALIGN) * _ALIGN
        placed.append((name, tuple(int(d) for d in shape), np.dtype(dtype), offset))
        offset += math.prod(shape) * np.dtype(dtype).itemsize
    return placed, max(offset, 1)


def _folder_for(size):
    """``/dev/shm`` when it has room for ``size`` bytes with a margin, else the temporary folder.

    A container's ``/dev/shm`` is often only 64 MB, and touching a page beyond its end kills the process
    with SIGBUS, so the free space is checked first. A regular file works as well, through the page cache.
    """
    try:
        stats = os.statvfs("/dev/shm")
    except (AttributeError, OSError):
        return None
    if os.access("/dev/shm", os.W_OK) and stats.f_bavail * stats.f_frsize > 2 * size:
        return "/dev/shm"
    return None


def _prefix(pid):
    return f"modularcnn-{pid}-"


def remove_files_of(pid):
    """Delete every shared block created by process ``pid`` (call it only once ``pid`` is dead)."""
    for folder in ("/dev/shm", tempfile.gettempdir()):
        for path in glob.glob(os.path.join(folder, _prefix(pid) + "*.shared")):
            try:
                os.unlink(path)
            except OSError:
                pass


class SharedArrays:
    """A mapping name -> array over one shared memory block.

    ``SharedArrays.create(specs)`` makes the block (zero-filled); ``SharedArrays.attach(path, specs)``
    maps an existing one, given the same ``specs`` (a list of ``(name, shape, dtype)``). ``close()``
    unmaps it; the creator's ``close()`` also deletes the file.
    """

    def __init__(self, path, specs, create):
        self.path = path
        self.specs = [(name, list(shape), np.dtype(dtype).str) for name, shape, dtype in specs]
        placed, size = _layout(specs)
        self._owner = create
        with open(path, "r+b") as handle:
            if create:
                handle.truncate(size)
            self._map = mmap.mmap(handle.fileno(), size)
            self._inode = os.fstat(handle.fileno()).st_ino
        self.arrays = {name: np.ndarray(shape, dtype, buffer=self._map, offset=offset)
                       for name, shape, dtype, offset in placed}

    @classmethod
    def create(cls, specs):
        _, size = _layout(specs)
        handle, path = tempfile.mkstemp(prefix=_prefix(os.getpid()), suffix=".shared",
                                        dir=_folder_for(size))
        os.close(handle)
        try:
            return cls(path, specs, create=True)
        except BaseException:
            os.unlink(path)
            raise

    @classmethod
    def attach(cls, path, specs):
        return cls(path, specs, create=False)

    def __getitem__(self, name):
        return self.arrays[name]

    def unlink(self):
        """Delete the file; the mapping stays valid in every process that has it (POSIX)."""
        if self._owner and self.path is not None:
            try:
                os.unlink(self.path)
                self.path = None
            except FileNotFoundError:
                self.path = None
            except OSError:
                pass  # Windows cannot delete a mapped file: close() tries again

    def unlink_if_still_there(self):
        """Delete the file this mapping came from, if it is still there (not a newer file at that path).

        A worker calls it when its parent is gone: a parent killed while the workers attach leaves it.
        """
        try:
            if self.path is not None and os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass

    def close(self):
        self.arrays = {}
        try:
            self._map.close()
        except BufferError:
            # An array view is still referenced somewhere; the mapping goes when it does.
            pass
        self.unlink()
