"""Publishing a folder whole: build it aside, then put it in place in one step.

A saved index is several files (bm25s writes its own). They are written into a fresh
private folder next to the target (``mkdtemp``: created exclusively, mode ``0700``), and
only the finished folder is moved to the target's name, so a reader sees the old index
or the new one, never a mix, and a crash leaves the old one. Nothing is ever written
through a symlink at the target: the link itself is replaced.

Replacing an existing folder in one step takes Linux's ``renameat2(RENAME_EXCHANGE)``
(glibc 2.28+), which swaps two paths atomically; Python has no wrapper for it, so it is
called through ``ctypes``. Where it is missing (another OS, a file system without it)
the old folder is renamed aside first and the new one moved in: a reader may then find
no index for an instant, never a half-written one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

_AT_FDCWD: Final = -100
_RENAME_EXCHANGE: Final = 2
#: errno values that mean "this system or file system cannot exchange": fall back.
_UNSUPPORTED: Final = frozenset({errno.ENOSYS, errno.EINVAL, errno.ENOTSUP})


@contextlib.contextmanager
def staging_folder(target: Path) -> Iterator[Path]:
    """A new, empty, private (``0700``) folder beside ``target``, removed when the block
    fails; pass it to :func:`publish_folder` at the end of the block.

    Parameters:
        target: where the finished folder will go (its parent is created if missing).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish_folder(staging: Path, target: Path) -> None:
    """Move the finished folder ``staging`` to ``target`` in one step, replacing what is
    there: a folder (swapped atomically where the system can), a symlink (the link is
    replaced; what it points to is untouched) or nothing.

    Parameters:
        staging: a complete folder from :func:`staging_folder`, beside ``target``.
        target: the folder's final name.
    """
    try:
        existing = os.lstat(target)
    except FileNotFoundError:
        existing = None
    if existing is None:
        try:
            os.rename(staging, target)
            return
        except OSError as exc:  # created meanwhile: replace it like any other
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    if _exchange(staging, target):
        old = staging  # after the swap, the staging name holds what was at the target
    else:
        old = staging.with_name(staging.name + ".old")
        os.rename(target, old)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(old, target)
            raise
    if stat.S_ISDIR(os.lstat(old).st_mode):
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def _exchange(first: Path, second: Path) -> bool:
    """Swap ``first`` and ``second`` atomically; False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in _UNSUPPORTED:
        return False
    raise OSError(error, os.strerror(error), str(second))
