"""The one atomic-write helper, shared by the core (checkpoints) and the study layer (results).

A temporary file in the same folder, renamed over the destination only once it is
complete, so a reader (or a resumed run) sees the old file or the new one, never a torn
one, even after ``kill -9``. It lives in the core so that :mod:`molrg.checkpoint` can use
it without importing the study layer; :mod:`molrg.study.results` re-exports it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading

__all__ = ["atomic_write", "default_mode"]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # os.umask can only be read by setting it: briefly, under a lock (other threads that
    # create files in that instant would see 0o077, a safe direction)
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return old


def default_mode(directory: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file (0o666) or folder (0o777) under the umask.

    ``tempfile.mkstemp`` creates 0o600 files and ``mkdtemp`` 0o700 folders (private on
    purpose); a result renamed into place keeps that mode, so :func:`atomic_write` and the
    run folder set the ordinary mode instead (a manifest is as readable as its CSVs).
    """
    return (0o777 if directory else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", *, fsync: bool = True, newline: str | None = None,
                 fsync_dir: bool = False):
    """Opens a temporary file next to ``path``; on a clean exit renames it over ``path``.

    On an exception the temporary file is removed and ``path`` is untouched. ``fsync`` also
    makes the new file's contents durable across a power loss (the rename alone is atomic,
    not durable); ``fsync_dir`` then fsyncs the folder too, which makes the rename itself
    durable (where the platform allows opening a folder). The file gets the mode a plain
    ``open`` would give (0o666 less the umask), not ``mkstemp``'s private 0o600. The
    temporary name is unique (``mkstemp``), so concurrent writers of one path never collide;
    the last rename wins.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": newline})) as fh:
            os.fchmod(fh.fileno(), default_mode())  # mkstemp's 0o600 -> what open() would give
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if fsync_dir:
        try:
            dfd = os.open(directory, os.O_RDONLY)
        except OSError:  # pragma: no cover - platforms without directory file descriptors
            return
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
