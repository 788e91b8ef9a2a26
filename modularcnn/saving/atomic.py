"""Atomic file replacement: a reader sees the old file or the new one, never a half-written one.

The new content goes to a temporary file in the *same folder* (so that the final rename stays on one
file system and is atomic), is flushed and fsync'ed, and then renamed over the target with
:func:`os.replace`; finally the folder itself is fsync'ed so that the rename survives a power cut.
A process killed at any moment leaves the target untouched (plus, at worst, a stray
``.<name>.<random>.tmp`` file beside it, which nothing reads).
"""

import contextlib
import errno
import os
import stat
import tempfile

from .. import validation
from ..errors import ArgumentError


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
    shown = validation.file_path(path, "path", "save")
    target = writable_target(path)
    folder = os.path.dirname(target)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                         dir=folder)
    except OSError as error:
        raise _user_error(error, shown, None) from None
    os.close(fd)
    try:
        yield temporary
        _fsync_file(temporary)
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise _user_error(error, shown, temporary) from None
        raise
    _fsync_folder(folder)


def writable_target(path):
    """The regular file that saving to ``path`` replaces, or an error saying why it may not.

    A symbolic link is followed (as h5py and Keras do): its target is replaced and the link stays.
    Refused: an empty path, a directory, a device node, a FIFO or a socket (``ArgumentError``, a
    ValueError; ``save("/dev/full")`` must not turn the device into a file); a file without any write
    permission bit (``PermissionError``, even for root, who could otherwise replace a 0444 file);
    a missing folder (``FileNotFoundError``).
    """
    path = validation.file_path(path, "path", "save")
    target = os.path.realpath(path)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            raise ArgumentError(f"save: refusing to replace {path!r}, which is a "
                                f"{_file_kind(info.st_mode)}, not a regular file")
        if not info.st_mode & 0o222 or not os.access(target, os.W_OK):
            raise PermissionError(errno.EACCES, "the file is write-protected; not replacing it", path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "the folder to save into does not exist", path)
    return target


def _file_kind(mode):
    for test, kind in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO (named pipe)"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return "special file"


def _user_error(error, path, temporary):
    """``error`` re-raised about the user's ``path``: never the hidden temporary file's name, and a full
    disk as one line instead of HDF5's error stack."""
    text = str(error)
    if error.errno == errno.ENOSPC or "No space left" in text or "ENOSPC" in text:
        return OSError(errno.ENOSPC, "no space left on the device; the previous file (if any) is "
                       "unchanged", path)
    if error.errno is not None and error.strerror:
        return type(error)(error.errno, error.strerror, path)
    first_line = text.splitlines()[0] if text else type(error).__name__
    if temporary:
        first_line = first_line.replace(temporary, path)
    return OSError(f"cannot save {path!r}: {first_line}")


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
