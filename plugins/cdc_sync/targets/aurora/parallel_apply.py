"""Apply one file's chunks on several connections while the file is still being converted.

The caller's thread converts the file and hands out each chunk as soon as it is written;
worker threads, one connection each, load and apply a chunk in a transaction that stays
open until the whole file has been converted and checked (the commit gate). Then each
commits; if the file turned out bad, or another chunk was refused, those still open roll
back. So the conversion overlaps the database's work, the chunks load in parallel, and a
file found bad at its end leaves nothing committed from the chunks in flight.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cdc_sync.errors import BadInput, CdcSyncError

log = logging.getLogger(__name__)
Chunk = TypeVar("Chunk")
_DONE = object()


class ChunkRefused(BadInput):
    """The database refused the data of a chunk (a value that does not fit, a bad line)."""


class GateClosed(CdcSyncError):
    """The chunk's transaction must not commit: the file is bad or another chunk was refused."""


class CommitGate:
    """Opens once the whole file is checked; `wait` says whether a chunk may commit."""

    def __init__(self) -> None:
        self._opened = threading.Event()
        self._file_ok = False
        self._cancelled = threading.Event()

    def open(self, file_ok: bool) -> None:
        self._file_ok = file_ok
        self._opened.set()

    def cancel(self) -> None:
        self._cancelled.set()
        self._opened.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def wait(self) -> None:
        """Block until the file is checked; raise GateClosed when the chunk must roll back."""
        self._opened.wait()
        if self._cancelled.is_set() or not self._file_ok:
            raise GateClosed()


@dataclass
class ParallelOutcome:
    rows: dict[int, int | None] = field(default_factory=dict)  # chunk id → rows, None: applied before
    refused: tuple[int, str] | None = None  # the first refused chunk and why
    database_seconds: float = 0.0  # time any connection was busy with the file (waits for the gate excluded)


@dataclass
class _Busy:
    """Intervals during which one worker had the database working (gate waits cut out)."""

    spans: list[tuple[float, float]] = field(default_factory=list)
    started: float | None = None

    def start(self) -> None:
        self.started = time.perf_counter()

    def stop(self) -> None:
        if self.started is not None:
            self.spans.append((self.started, time.perf_counter()))
            self.started = None


class _WorkerGate:
    """The gate as one worker sees it: time spent waiting is not database time."""

    def __init__(self, gate: CommitGate, busy: _Busy) -> None:
        self._gate, self._busy = gate, busy

    def wait(self) -> None:
        self._busy.stop()
        try:
            self._gate.wait()
        finally:
            self._busy.start()


@dataclass
class _Worker:
    connection: Any | None  # the caller's connection (worker 0) or None until its first chunk
    owned: bool = False
    busy: _Busy = field(default_factory=_Busy)
    error: BaseException | None = None


def apply_in_parallel(
    chunks: Generator[tuple[int, Chunk], None, None],
    apply: Callable[[Any, int, Chunk, Any], int | None],
    first_connection: Any,
    open_connection: Callable[[], Any],
    connections: int,
) -> ParallelOutcome:
    """Run `apply(connection, number, chunk, gate)` for every chunk, on up to `connections`
    connections (the first is the caller's, the others are opened when needed and closed
    here). `apply` must call `gate.wait()` right before it commits, roll back on GateClosed
    and re-raise it, and raise ChunkRefused for data the database refuses. An exception from
    `chunks` (the file is bad) closes the gate and is re-raised after every worker stopped;
    so is any other error of a worker. `chunks` is closed before the workers are joined, so
    a chunk still being written is finished (its reader must not wait for it forever)."""
    gate = CommitGate()
    work: queue.Queue = queue.Queue()  # unbounded: the converter never waits for a worker
    outcome = ParallelOutcome()
    lock = threading.Lock()
    workers = [_Worker(first_connection if n == 0 else None) for n in range(max(1, connections))]

    def run(worker: _Worker) -> None:
        while (item := work.get()) is not _DONE:
            number, chunk = item
            if gate.cancelled:
                continue
            try:
                if worker.connection is None:
                    worker.connection, worker.owned = open_connection(), True
                worker.busy.start()
                try:
                    rows = apply(worker.connection, number, chunk, _WorkerGate(gate, worker.busy))
                finally:
                    worker.busy.stop()
                with lock:
                    outcome.rows[number] = rows
            except GateClosed:
                continue
            except ChunkRefused as refused:
                with lock:
                    if outcome.refused is None or number < outcome.refused[0]:
                        outcome.refused = (number, str(refused))
                gate.cancel()
            except BaseException as error:  # noqa: BLE001 - re-raised by the caller's thread
                worker.error = error
                gate.cancel()

    threads = [
        threading.Thread(target=run, args=(w,), name=f"cdc-sync-apply-{n}", daemon=True) for n, w in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    file_error: BaseException | None = None
    try:
        for item in chunks:
            if gate.cancelled:
                break  # a chunk was refused or a worker failed: the rest is not needed
            work.put(item)
        gate.open(file_ok=True)
    except BaseException as error:  # noqa: BLE001 - re-raised below, after the workers stopped
        file_error = error
        gate.open(file_ok=False)
    finally:
        chunks.close()  # stopped early: the converter finishes what it was writing
        for _ in threads:
            work.put(_DONE)
        for thread in threads:
            thread.join()
        for worker in workers:
            if worker.owned and worker.connection is not None:
                worker.connection.close()
    outcome.database_seconds = _union_seconds([span for w in workers for span in w.busy.spans])
    if file_error is not None:
        raise file_error
    for worker in workers:
        if worker.error is not None:
            raise worker.error
    return outcome


def _union_seconds(spans: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
