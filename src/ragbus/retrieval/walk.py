"""Finding a corpus folder's documents without ever leaving it.

A corpus folder is untrusted input: it may hold a symlink to ``/proc/self/environ`` or
to ``~/.aws``, a ``loop -> .`` symlink, a FIFO named ``notes.txt``, or millions of
files. The walk therefore:

- resolves the root once and never reads anything whose real path lies outside it;
- walks the real tree first, without following any symlink, then follows each symlink
  that leads inside the root once, to a file or folder not visited yet (so a link to a
  hidden draft is indexed under the link's name, and a loop ends at once);
- lists regular files only, and opens each with ``O_NOFOLLOW``, checking that what it
  opened is the file it listed (device and inode), so a file swapped for a symlink
  between the walk and the read is refused rather than followed;
- stops with an error naming the file when a file is larger than
  ``max_file_bytes`` or when there are more than ``max_files`` documents.

Names starting with ``.`` are skipped. What is skipped, and why, is reported.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final

from ragbus.config.settings import CORPUS_MAX_FILE_BYTES, CORPUS_MAX_FILES
from ragbus.errors import ConfigurationError

if TYPE_CHECKING:
    from ragbus.config import Settings

#: File suffixes read as documents.
DOCUMENT_SUFFIXES: Final = (".md", ".txt", ".jsonl")

# O_NONBLOCK: opening a FIFO swapped in after the walk must not wait for a writer.
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class CorpusLimits:
    """How much of a corpus folder is read.

    Parameters:
        max_file_bytes: a larger document is an error naming it (default 32 MiB).
        max_files: more documents than this is an error naming the first one over
            (default 10,000).
    """

    max_file_bytes: int = CORPUS_MAX_FILE_BYTES
    max_files: int = CORPUS_MAX_FILES

    @classmethod
    def from_settings(cls, settings: Settings) -> CorpusLimits:
        """The limits of ``settings`` (``corpus_max_file_bytes``, ``corpus_max_files``)."""
        return cls(settings.corpus_max_file_bytes, settings.corpus_max_files)


@dataclass(frozen=True, slots=True)
class CorpusFile:
    """A document found by the walk.

    Parameters:
        name: its path relative to the corpus root, ``/``-separated (the ``doc_id``
            prefix); for a followed symlink, the link's path.
        path: the real path to open.
        identity: ``(st_dev, st_ino)`` of the file the walk saw.
    """

    name: str
    path: Path
    identity: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Skipped:
    """An entry of the corpus folder that was not read, and why."""

    name: str
    reason: str


@dataclass(slots=True)
class CorpusListing:
    """The documents of a corpus folder, in path order, and what was skipped."""

    files: list[CorpusFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


def _too_large(name: str, size: int, limits: CorpusLimits) -> ConfigurationError:
    return ConfigurationError(
        f"corpus file {name} is {size} bytes, over the limit of {limits.max_file_bytes}: "
        "split it, leave it out of the folder, or raise RAGBUS_CORPUS_MAX_FILE_BYTES"
    )


class _Walk:
    """One walk of one corpus root (see :func:`list_documents`)."""

    def __init__(self, root: Path, limits: CorpusLimits) -> None:
        self.root = root
        self.limits = limits
        self.listing = CorpusListing()
        self.visited: dict[tuple[int, int], str] = {}
        self.links: deque[tuple[PurePosixPath, Path]] = deque()

    def run(self) -> CorpusListing:
        self.visited[_identity(self.root.stat())] = "."
        self.scan(self.root, PurePosixPath())
        while self.links:
            self.follow(*self.links.popleft())
        return self.listing

    def scan(self, folder: Path, relative: PurePosixPath) -> None:
        """Every entry under ``folder``, depth first in name order, following no link.

        An explicit stack rather than recursion: a deep tree is no ``RecursionError``.
        """
        stack = [(relative, iter(self.entries(folder, relative)))]
        while stack:
            prefix, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            if entry.name.startswith("."):
                continue
            name = prefix / entry.name
            if entry.is_symlink():
                self.links.append((name, Path(entry.path)))
            elif entry.is_dir(follow_symlinks=False):
                self.visited[_identity(entry.stat(follow_symlinks=False))] = name.as_posix()
                stack.append((name, iter(self.entries(Path(entry.path), name))))
            else:
                self.add(name, Path(entry.path), entry.stat(follow_symlinks=False))

    @staticmethod
    def entries(folder: Path, name: PurePosixPath) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as scanned:
                return sorted(scanned, key=lambda entry: entry.name)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read corpus folder {name.as_posix() or '.'}: {exc.strerror or exc}"
            ) from exc

    def follow(self, name: PurePosixPath, link: Path) -> None:
        """Follow the symlink ``link`` once, if it leads inside the root to something not
        visited yet."""
        try:
            target = Path(os.path.realpath(link, strict=True))
            status = target.stat()
        except OSError:
            self.skip(name, "a broken symlink")
            return
        if not target.is_relative_to(self.root):
            self.skip(name, "a symlink that leads outside the corpus folder")
            return
        seen = self.visited.get(_identity(status))
        if seen is not None:
            what = "a folder" if stat.S_ISDIR(status.st_mode) else "the same file"
            self.skip(name, f"{what} as {seen}" if seen != "." else "a link to the corpus root")
            return
        if stat.S_ISDIR(status.st_mode):
            self.visited[_identity(status)] = name.as_posix()
            self.scan(target, name)
        else:
            self.add(name, target, status)

    def add(self, name: PurePosixPath, path: Path, status: os.stat_result) -> None:
        if not name.name.endswith(DOCUMENT_SUFFIXES):
            return
        shown = name.as_posix()
        if not stat.S_ISREG(status.st_mode):
            self.skip(name, "not a regular file")
            return
        if status.st_size > self.limits.max_file_bytes:
            raise _too_large(shown, status.st_size, self.limits)
        if len(self.listing.files) >= self.limits.max_files:
            raise ConfigurationError(
                f"corpus {self.root} has more than {self.limits.max_files} documents "
                f"({shown} is one too many): index a smaller folder, or raise "
                "RAGBUS_CORPUS_MAX_FILES"
            )
        self.visited[_identity(status)] = shown
        self.listing.files.append(CorpusFile(shown, path, _identity(status)))

    def skip(self, name: PurePosixPath, reason: str) -> None:
        self.listing.skipped.append(Skipped(name.as_posix(), reason))


def list_documents(root: Path, limits: CorpusLimits | None = None) -> CorpusListing:
    """The documents under the folder ``root`` (or ``root`` itself, a single file).

    Raises :class:`~ragbus.errors.ConfigurationError` when ``root`` does not exist, for
    an unreadable folder, a document over ``limits.max_file_bytes`` or more than
    ``limits.max_files`` documents (naming the file).

    Parameters:
        root: a folder searched recursively, or one document file; a symlink as the
            root itself is resolved (the user named it).
        limits: size and count limits (default :class:`CorpusLimits`).
    """
    limits = limits or CorpusLimits()
    try:
        real_root = root.resolve(strict=True)
        status = real_root.stat()
    except OSError as exc:
        raise ConfigurationError(f"corpus path does not exist: {root}") from exc
    if stat.S_ISDIR(status.st_mode):
        return _Walk(real_root, limits).run()
    if not root.name.endswith(DOCUMENT_SUFFIXES):
        suffixes = ", ".join(DOCUMENT_SUFFIXES)
        raise ConfigurationError(f"corpus file {root} is not a document ({suffixes})")
    walk = _Walk(real_root.parent, limits)
    walk.add(PurePosixPath(root.name), real_root, status)
    if walk.listing.skipped:
        raise ConfigurationError(f"corpus file {root} is not a regular file")
    return walk.listing


def read_document(file: CorpusFile, limits: CorpusLimits | None = None) -> bytes:
    """The bytes of ``file``, read without following a symlink and no more than
    ``limits.max_file_bytes`` of them.

    Raises :class:`~ragbus.errors.ConfigurationError` naming the file when it cannot be
    read, is no longer the file the walk listed, or grew over the limit.

    Parameters:
        file: a document listed by :func:`list_documents`.
        limits: the size limit (default :class:`CorpusLimits`).
    """
    limits = limits or CorpusLimits()
    try:
        descriptor = os.open(file.path, _OPEN_FLAGS)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read corpus file {file.name}: {exc.strerror or exc}"
        ) from exc
    with os.fdopen(descriptor, "rb") as opened:
        status = os.fstat(opened.fileno())
        if not stat.S_ISREG(status.st_mode) or _identity(status) != file.identity:
            raise ConfigurationError(
                f"corpus file {file.name} changed while it was indexed: index again"
            )
        data = opened.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise _too_large(file.name, max(len(data), status.st_size), limits)
    return data
