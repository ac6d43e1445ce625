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

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", *, fsync: bool = True, newline: str | None = None,
                 fsync_dir: bool = False):
    """Opens a temporary file next to ``path``; on a clean exit renames it over ``path``.

    On an exception the temporary file is removed and ``path`` is untouched. ``fsync`` also
    makes the new file's contents durable across a power loss (the rename alone is atomic,
    not durable); ``fsync_dir`` then fsyncs the folder too, which makes the rename itself
    durable (where the platform allows opening a folder).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": newline})) as fh:
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
