"""Audit-log decoding rate: audit lines per second from Kinesis records, against the floor.

Records are built as CloudWatch Logs writes them (gzip JSON, 100 log events each) and
base64-encoded as Kinesis carries them on the wire. Floor: bare base64 + gzip decoding of the
same records. Measured: decode + parse every audit line (the trigger's per-line work), and
the same plus finding the written tables (sqlglot; each statement shape parsed once and
remembered: the statements here differ only in their values, as an application's do). For
comparison, the same decoding with every line parsed one by one by lines.parse_line.
The works run in turn, round after round, so
that a busy machine slows them alike; the best round of each counts. Prints the figures.
"""

from __future__ import annotations

import base64
import gzip
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from cdc_sync.sources.audit_log.batch import KinesisRecord, decode_batch  # noqa: E402
from cdc_sync.sources.audit_log.lines import parse_line  # noqa: E402
from cdc_sync.sources.audit_log.records import decode_record  # noqa: E402
from tools.audit_standin import audit_line, subscription_record  # noqa: E402

LINES, PER_RECORD, ROUNDS = 100_000, 100, 5
STATEMENTS = [
    "INSERT INTO customers (id, name, note) VALUES ({i}, 'O\\'Brien, Pat', '山田 🎉')",
    "UPDATE orders SET status = 'shipped', note = 'a,b' WHERE id = {i}",
    "update orders o join customers c on o.cid = c.id set o.total = o.total + 1 where c.id = {i}",
    "DELETE FROM sessions WHERE id = {i}",
    "SELECT * FROM customers WHERE id = {i}",
    "INSERT INTO crm.leads SELECT * FROM customers WHERE id = {i}",
]


def make_wire_records() -> list[str]:
    rng = random.Random(7)
    lines = [
        audit_line(rng.choice(STATEMENTS).format(i=i), query_id=i, timestamp=str(1764979200000000 + i))
        for i in range(LINES)
    ]
    return [
        base64.b64encode(subscription_record(lines[at : at + PER_RECORD], first_id=at)).decode()
        for at in range(0, LINES, PER_RECORD)
    ]


def best_of_interleaved(*works) -> list[float]:
    """The best time of each work over ROUNDS rounds that run them in turn, so that a busy
    machine slows the floor and the measured work alike (their ratio is what is reported)."""
    best = [float("inf")] * len(works)
    for _ in range(ROUNDS):
        for index, work in enumerate(works):
            began = time.perf_counter()
            work()
            best[index] = min(best[index], time.perf_counter() - began)
    return best


def main() -> None:
    wire = make_wire_records()

    def floor() -> None:
        for text in wire:
            gzip.decompress(base64.b64decode(text))

    def records() -> list[KinesisRecord]:
        return [KinesisRecord("audit", "shardId-0", str(n), base64.b64decode(t)) for n, t in enumerate(wire)]

    def decode_only() -> None:
        batch = decode_batch(records(), find_tables=False)
        assert batch.lines == LINES and not batch.unparsed

    def with_tables() -> None:
        batch = decode_batch(records())
        assert batch.lines == LINES and not batch.unparsed and not batch.unmapped

    def per_line() -> None:
        lines = 0
        for record in records():
            for log_event in decode_record(record.data, record.where).events:
                parse_line(log_event.message)  # each event dropped, as decode_batch drops what wrote nothing
                lines += 1
        assert lines == LINES

    t_floor, t_decode, t_tables, t_per_line = best_of_interleaved(floor, decode_only, with_tables, per_line)
    print(f"{LINES:,} audit lines in {len(wire):,} records of {PER_RECORD}")
    print(f"floor (base64 + gzip):          {LINES / t_floor:>12,.0f} lines/s")
    print(f"decode + parse audit lines:     {LINES / t_decode:>12,.0f} lines/s = {t_floor / t_decode:.2f}x floor")
    print(f"... + written tables (sqlglot): {LINES / t_tables:>12,.0f} lines/s = {t_floor / t_tables:.3f}x floor")
    print(f"decode + parse_line per line:   {LINES / t_per_line:>12,.0f} lines/s = {t_floor / t_per_line:.2f}x floor")


if __name__ == "__main__":
    main()
