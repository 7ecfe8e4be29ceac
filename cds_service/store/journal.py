"""The card journal: every issued card on local disk before its answer leaves.

The card log writes to the database in the background, 0.1 s of cards at a time, so a
worker killed outright (SIGKILL, the out-of-memory killer) took its last batch with it:
an audit trail with a hole exactly where an incident happened. Now the request thread
appends its cards to this process's journal (one ``write`` of JSON lines, no fsync: the
kernel keeps what a killed process wrote; a lost machine is what the database commit,
0.1 s later, covers) before it answers. The writer cuts the journal into a segment after
each batch it takes, and deletes a segment once every card in it is written or spooled.
A journal whose process is gone is replayed into the database by the next writer, as
the spool is; a card's uuid is written once, so a card both written and journaled is
stored once.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from .. import logs

PREFIX = "journal"
SUFFIX = ".jsonl"


class Journal:
    def __init__(self, folder: Path, tag: str) -> None:
        self.folder = folder
        self.tag = tag
        self.lock = threading.Lock()  # held by the card log while it appends and queues
        self._fd: int | None = None
        self._pid: int | None = None
        self._written = False
        self._segments = itertools.count(1)
        self._failed = False

    def append(self, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Append ``rows`` (caller holds ``lock``); False if the disk refused (logged once;
        the cards still go to the database as before)."""
        if not rows:
            return True
        data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        try:
            fd = self._open()
            os.write(fd, data)
        except OSError as error:
            if not self._failed:
                self._failed = True
                logs.event("card-journal-failed", logging.ERROR, error=type(error).__name__)
            return False
        self._written = True
        return True

    def cut(self) -> Path | None:
        """The journal so far as a segment of its own (caller holds ``lock``), or None when
        nothing was appended since the last cut."""
        if not self._written or self._fd is None or self._pid != os.getpid():
            return None
        os.close(self._fd)
        self._fd, self._written = None, False
        segment = self._path(f"s{next(self._segments)}")
        try:
            self._path("live").rename(segment)
        except OSError:
            return None
        return segment

    def settle(self, segment: Path) -> None:
        """Every card of ``segment`` is written or spooled: it is no longer needed."""
        segment.unlink(missing_ok=True)

    def discard_own(self) -> None:
        """At a clean stop (everything written or spooled): this process's files go."""
        with self.lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
                self._fd = None
        if self.folder.is_dir():
            for path in self.folder.glob(f"{PREFIX}-{self.tag}-*-{os.getpid()}{SUFFIX}"):
                path.unlink(missing_ok=True)

    def _open(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
            self.folder.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            self._fd = os.open(self._path("live"), flags, 0o600)
            self._pid = os.getpid()
        return self._fd

    def _path(self, part: str) -> Path:
        return self.folder / f"{PREFIX}-{self.tag}-{part}-{os.getpid()}{SUFFIX}"
