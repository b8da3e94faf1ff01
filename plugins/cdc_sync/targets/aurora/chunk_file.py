"""One chunk's CSV file for LOAD DATA, which the database may start reading while the
converter is still writing it.

Under LOAD DATA LOCAL every chunk is given out as soon as its first rows are written, so the
database works while the worker converts the rest (otherwise it idles through the first
chunk's conversion, and the next connection starts a whole chunk's conversion late and
finishes alone). `LOAD DATA LOCAL INFILE` then reads a pipe (`/dev/fd/N`) that a
feeder thread fills from the growing file until the converter says it is finished. The
file stays on disk: a second attempt (staging after a refused direct load) reads it whole.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_READ_BYTES = 1 << 20


class ChunkFile:
    def __init__(self, path: Path, *, streamed: bool = False) -> None:
        self.path = path
        self.streamed = streamed  # given out before it was finished
        self._rows = 0
        self._finished = False
        self._written = threading.Condition()
        self._generation = 0  # counts writes, so a feeder cannot miss one between read and wait

    # ------------------------------------------------------------ the converter
    def grew(self, rows: int) -> None:
        with self._written:
            self._rows += rows
            self._generation += 1
            self._written.notify_all()

    def finish(self) -> None:
        """No more rows: also when the converter failed (the gate then rolls the chunk back)."""
        with self._written:
            self._finished = True
            self._written.notify_all()

    # ------------------------------------------------------------ the loader
    @property
    def finished(self) -> bool:
        with self._written:
            return self._finished

    @property
    def rows(self) -> int:
        """Rows written so far (all of them once finished)."""
        with self._written:
            return self._rows

    @contextmanager
    def load_path(self) -> Iterator[str]:
        """A path for LOAD DATA LOCAL INFILE that gives the whole chunk: the file itself once
        finished, else a pipe fed from the file as it grows, ended when it is finished."""
        if self.finished:
            yield str(self.path)
            return
        read_end, write_end = os.pipe()
        feeder = threading.Thread(target=self._feed, args=(write_end,), name="cdc-sync-chunk-feeder", daemon=True)
        feeder.start()
        try:
            yield f"/dev/fd/{read_end}"
        finally:
            os.close(read_end)  # if the reader stopped early, the feeder's next write fails and it ends
            feeder.join()

    def _feed(self, write_end: int) -> None:
        try:
            with os.fdopen(write_end, "wb") as sink, open(self.path, "rb") as source:
                while True:
                    with self._written:
                        generation, finished = self._generation, self._finished
                    while data := source.read(_READ_BYTES):
                        sink.write(data)
                    sink.flush()
                    if finished:
                        return  # everything written before `finish` has been read
                    self._wait_for_more(generation)
        except BrokenPipeError:
            pass  # the database stopped reading (an error): the loader sees it from the LOAD
        # any other error ends the stream early: the loader finds fewer rows loaded than written

    def _wait_for_more(self, seen_generation: int) -> None:
        with self._written:
            self._written.wait_for(lambda: self._generation != seen_generation or self._finished)
