"""Atomic file replacement: a reader sees the old file or the new one, never a half-written one.

The new content goes to a temporary file in the *same folder* (so that the final rename stays on one
file system and is atomic), is flushed and fsync'ed, and then renamed over the target with
:func:`os.replace`; finally the folder itself is fsync'ed so that the rename survives a power cut.
A process killed at any moment leaves the target untouched (plus, at worst, a stray
``.<name>.<random>.tmp`` file beside it, which nothing reads).
"""

import contextlib
import os
import stat
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write; on a clean exit it durably replaces ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace. Its folder must exist.

    Any exception in the ``with`` block (``KeyboardInterrupt`` included) deletes the temporary file and
    leaves ``path`` as it was. The new file gets the permissions of the file it replaces, or the usual
    ``0o666 & ~umask`` for a new file (not the ``0o600`` that temporary files are created with).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield temporary
        _fsync_file(temporary)
        os.chmod(temporary, _mode_for(path))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def _fsync_file(path):
    # O_RDWR rather than O_RDONLY: Windows refuses to fsync a read-only descriptor.
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder):
    """Make the rename durable; a no-op where folders cannot be opened or synced (Windows, some FUSE)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mode_for(path):
    """Permission bits for the new file: those of the file being replaced, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask():
    # Reading the umask means setting it; /proc avoids that race where it exists (Linux).
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
