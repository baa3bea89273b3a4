"""Files that hold questions, answers or corpus text: private, and written atomically.

Dead letters, their exports and search indexes hold what users asked and what their
documents say, so they are created readable by their owner only (``0600``), whatever
the umask. A file is written whole or not at all: into an exclusive temporary file in
the same folder, then moved over the target with ``os.replace``, so a planted symlink
at the target is replaced, never written through, and a crash leaves the old file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Final

#: Permissions of every file ragbus creates that holds user data.
PRIVATE_MODE: Final = 0o600


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically, with mode ``0600``.

    The folder is created if missing. A symlink at ``path`` is replaced by the new file,
    never followed.

    Parameters:
        path: the file to (re)write.
        data: its whole content; text is encoded as UTF-8.
    """
    payload = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp opens with O_CREAT | O_EXCL and mode 0600.
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def ensure_private(path: Path) -> None:
    """Create ``path`` empty with mode ``0600`` if it does not exist (for a file that is
    then opened by another library, e.g. SQLite), and make an existing file ``0600``.

    Parameters:
        path: the file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_MODE))
    os.chmod(path, PRIVATE_MODE, follow_symlinks=False)
