"""Compare one table between the source and one target, and name the rows that differ.

The data-diff method, with one query per level and side instead of one per segment:

  1. Buckets: one scan per side returns (row count, sum of row hashes) for every bucket of
     the key space — equal-width ranges of the leading primary-key column when it is an
     integer (index range scans later), else residues of a key hash. Row counts are the
     sums of the bucket counts. Equal buckets everywhere: in sync, nothing else runs.
  2. Bisection: buckets that differ and hold more than `leaf_rows` rows are split again
     (one query per side for all of them, limited to their ranges), until every differing
     segment is small.
  3. Rows: the small segments' keys and row hashes are fetched and compared: keys only in
     the source are missing in the target, keys only in the target are extra, equal keys
     with other hashes changed; for those, each column's canonical text names the columns.

Differences that may be replication lag are not drift: a source row whose update time (at
the precision the commit times have: whole seconds when the newest has no fraction) is not
older than the newest change the target has loaded, and whose change the target's row does
not already hold, is lag; after `recheck_seconds` the remaining keys are compared again and
those that agree by then were lag too.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from cdc_sync.errors import SetupError
from cdc_sync.reconcile.dialects import FLOAT_DIGITS, SINGLE_FLOAT_DIGITS, HashColumn, native_text_equal
from cdc_sync.reconcile.sides import AbsentSide, KeyTuple, Side, key_token

log = logging.getLogger(__name__)

_SINGLE_FLOAT = re.compile(r"^float(\(|\s|$)", re.IGNORECASE)  # MySQL FLOAT, not BigQuery's FLOAT64


class ReconcileError(SetupError):
    """The comparison cannot run (a table or column is missing, a key type is unsupported)."""


@dataclass(frozen=True)
class Settings:
    max_buckets: int = 4096  # first-level buckets (one GROUP BY result row each)
    leaf_rows: int = 2000  # segments up to this size have their keys fetched
    sample_keys: int = 20  # differing keys kept in the result
    recheck_seconds: float = 60.0  # wait before comparing non-lag differences again; 0: no re-check
    max_detail_keys: int = 10_000  # changed keys whose columns are named
    max_fetch_rows: int = 200_000  # rows fetched per side at most; beyond, the result is partial


@dataclass
class Difference:
    key: dict
    kind: str  # missing (in the target) | extra (in the target) | changed
    columns: list[str] = field(default_factory=list)
    lag: bool = False
    stamp: dt.datetime | None = None  # commit time a repair row needs to win in the target (repair.py)


@dataclass
class Comparison:
    table: str
    target: str
    source_rows: int = 0
    target_rows: int = 0
    missing: int = 0
    extra: int = 0
    changed: int = 0
    lag: int = 0
    sample: list[Difference] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)  # source columns the target lacks: drift
    watermark: str | None = None
    seconds: float = 0.0
    levels: int = 0
    buckets: int = 0
    rows_fetched: int = 0
    method: str = ""
    partial: bool = False  # more rows differ than max_fetch_rows: counts are lower bounds
    differences: list[Difference] = field(default_factory=list, repr=False)  # all of them; not stored

    @property
    def status(self) -> str:
        if self.partial or self.missing or self.extra or self.changed or self.missing_columns:
            return "drift"
        return "lag" if self.lag else "in_sync"

    def to_dict(self) -> dict:
        """JSON-safe (XCom, results table): key values other than int and str become text."""
        out = asdict(self)
        del out["differences"]
        for d in out["sample"]:
            d.pop("stamp", None)
            d["key"] = {k: v if isinstance(v, (int, str)) else str(v) for k, v in d["key"].items()}
        out["status"] = self.status
        return out

    def drift_keys(self) -> list[dict]:
        """Keys that differ for another reason than lag: what a repair re-emits."""
        return [d.key for d in self.differences if not d.lag]

    def summary(self) -> str:
        text = (
            f"{self.table} → {self.target}: {self.status}; rows source {self.source_rows}, target "
            f"{self.target_rows}; missing {self.missing}, extra {self.extra}, changed {self.changed}, "
            f"lag {self.lag} ({self.seconds:.2f}s, {self.levels} level(s), {self.rows_fetched} row(s) fetched)"
        )
        if self.partial:
            text += "; more rows differ than are listed (max_fetch_rows reached): counts are lower bounds"
        if self.missing_columns:
            text += f"; source column(s) missing in the target: {', '.join(self.missing_columns)}"
        drift = [d for d in self.sample if not d.lag]
        if drift:
            text += "; first differing keys: " + ", ".join(
                f"{d.key} {d.kind}" + (f" ({', '.join(d.columns)})" if d.columns else "") for d in drift[:10]
            )
        return text


@dataclass(frozen=True)
class Level:
    """How rows are grouped at one level: key ranges of `width` from `origin`, or residues
    of the key hash modulo `modulus` — within some buckets of an outer range level when a
    composite key's leading value alone still holds too many rows."""

    column: str | None  # the integer leading key column (range mode), None for hash mode
    width: int = 1
    origin: int = 0
    modulus: int = 1
    within: tuple["Level", tuple[int, ...]] | None = None  # (range level, its buckets) a hash level is limited to

    def bucket(self, side: Side, key_hash: str) -> str:
        if self.column:
            return side.dialect.bucket(side.dialect.ident(self.column), self.origin, self.width)
        return side.dialect.modulo(key_hash, self.modulus)

    def where(self, side: Side, key_hash: str, buckets: list[int]) -> str:
        if not buckets:
            return "FALSE"
        if self.column:
            column = side.dialect.ident(self.column)
            ranges: list[list[int]] = []
            for b in sorted(buckets):  # adjacent buckets become one range
                low, high = self.origin + b * self.width, self.origin + (b + 1) * self.width - 1
                if ranges and ranges[-1][1] + 1 == low:
                    ranges[-1][1] = high
                else:
                    ranges.append([low, high])
            return " OR ".join(f"{column} BETWEEN {int(lo)} AND {int(hi)}" for lo, hi in ranges)
        residues = (
            f"{side.dialect.modulo(key_hash, self.modulus)} IN ({', '.join(str(int(b)) for b in sorted(buckets))})"
        )
        if self.within is None:
            return residues
        outer, outer_buckets = self.within
        return f"({outer.where(side, key_hash, list(outer_buckets))}) AND {residues}"

    def split(self, factor: int, buckets: Sequence[int] = ()) -> "Level":
        """The next level for `buckets` of this one."""
        if self.column and self.width > 1:
            return Level(self.column, width=max(1, math.ceil(self.width / factor)), origin=self.origin)
        if self.column:  # one leading-key value per bucket and still too many rows: by hash of the whole key
            return Level(None, modulus=factor, within=(self, tuple(sorted(buckets))))
        return Level(None, modulus=self.modulus * factor, within=self.within)

    @property
    def splittable(self) -> bool:
        return bool(self.column) or self.modulus < 2**40


def _both(source_call: Callable[[], Any], target_call: Callable[[], Any]) -> tuple[Any, Any]:
    """Run the source and the target query at the same time (two databases, or two cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        a, b = pool.submit(source_call), pool.submit(target_call)
        return a.result(), b.result()


APPROXIMATE_KEY = (
    "{table}: primary key column {column} is {type}, an approximate number: its values cannot be "
    "looked up or compared exactly across engines, so reconcile and repair refuse this table"
)


def check_key_types(table: str, key_columns: list[str], source_kinds: dict) -> None:
    """Refuse keys that cannot be compared exactly: floats (approximate), types without a hash kind."""
    for name in key_columns:
        if name not in source_kinds:
            continue
        kind, column_type = source_kinds[name]
        if kind == "float":
            raise ReconcileError(APPROXIMATE_KEY.format(table=table, column=name, type=column_type))
        if kind is None:
            raise ReconcileError(
                f"{table}: primary key column {name} has type {column_type}, which cannot be compared across engines"
            )


def hash_columns(
    table: str,
    source_kinds: dict,
    target_kinds: dict,
    key_columns: list[str],
    exclude: set[str],
    same_engine: bool,
    same_server: bool = False,
    missing_columns: list[str] | None = None,
) -> tuple[list[HashColumn], list[HashColumn], list[str]]:
    """The columns both sides have, as each side's own kind; and the ones left out (why).
    Source columns the target lacks are appended to `missing_columns` (a difference)."""
    missing = [k for k in key_columns if k not in source_kinds or k not in target_kinds]
    if missing:
        raise ReconcileError(f"{table}: primary key column(s) {missing} not found on both sides")
    check_key_types(table, key_columns, source_kinds)
    source_cols, target_cols, ignored = [], [], []
    for name, (kind, source_type) in source_kinds.items():
        if name in exclude or name.startswith("_cdc_"):
            continue
        if name not in target_kinds:
            ignored.append(f"{name} (not in target)")
            if missing_columns is not None:
                missing_columns.append(name)
            continue
        other, target_type = target_kinds[name]
        if kind is None or other is None:
            ignored.append(f"{name} (type {source_type if kind is None else target_type} not comparable)")
            continue
        native = same_engine and native_text_equal(kind, source_type, target_type, same_server)
        single = any(_SINGLE_FLOAT.match(t) for t in (source_type, target_type))
        digits = SINGLE_FLOAT_DIGITS if single else FLOAT_DIGITS
        # both sides frame a value alike: when either holds it as text (MySQL TIME is text in the targets)
        framed = bool({kind, other} & {"text", "time"}) or (native and kind == "bytes")
        source_cols.append(HashColumn(name, kind, native, digits, framed))
        target_cols.append(HashColumn(name, other, native, digits, framed))
    return source_cols, target_cols, ignored


def compare(
    table: str,
    source: Side,
    target: Side,
    key_columns: list[str],
    *,
    settings: Settings = Settings(),
    updated_at_column: str | None = None,
    exclude: set[str] = frozenset(),  # type: ignore[assignment]
    sleep: Callable[[float], None] = time.sleep,
) -> Comparison:
    started = time.monotonic()
    result = Comparison(table=table, target=target.label)
    source_kinds, target_kinds = _both(source.kinds, target.kinds)
    if not source_kinds:
        raise ReconcileError(f"{table}: source table {source.relation} not found")
    if not target_kinds:  # nothing loaded yet: every source row is missing there
        log.info("%s: %s has no %s yet; comparing with an empty table", table, target.label, target.relation)
        target, target_kinds = AbsentSide(target), _same_kinds_for(target, source_kinds)
    same_engine = source.dialect.engine == target.dialect.engine
    same_server = same_engine and source.server() == target.server()
    source_cols, target_cols, result.ignored_columns = hash_columns(
        table, source_kinds, target_kinds, key_columns, set(exclude), same_engine, same_server, result.missing_columns
    )
    result.columns = [c.name for c in source_cols]
    result.method = source.dialect.hash_function
    key_kinds = {c.name: c for c in source_cols if c.name in key_columns}
    source_hash, target_hash = source.dialect.row_hash(source_cols), target.dialect.row_hash(target_cols)
    source_key = source.dialect.key_hash([key_kinds[k] for k in key_columns])
    target_key = target.dialect.key_hash([c for c in target_cols if c.name in key_columns])

    lead = key_columns[0]
    if key_kinds[lead].kind == "integer" and dict((c.name, c.kind) for c in target_cols)[lead] == "integer":
        (s_low, s_high), (t_low, t_high) = _both(lambda: source.bounds(lead), lambda: target.bounds(lead))
        lows = [int(v) for v in (s_low, t_low) if v is not None]
        highs = [int(v) for v in (s_high, t_high) if v is not None]
        if not lows:
            result.seconds = time.monotonic() - started
            return result  # both empty
        origin, span = min(lows), max(highs) - min(lows) + 1
        level = Level(lead, width=max(1, math.ceil(span / settings.max_buckets)), origin=origin)
    else:
        level = Level(None, modulus=min(settings.max_buckets, 1024))

    # levels 1 and 2: bucket checksums, then bisection of the differing buckets
    leaves: list[tuple[Level, list[int]]] = []
    budget = settings.max_fetch_rows
    source_where = target_where = "TRUE"
    while True:
        s, t = _both(
            partial(source.checksums, level.bucket(source, source_key), source_hash, source_where),
            partial(target.checksums, level.bucket(target, target_key), target_hash, target_where),
        )
        result.levels += 1
        result.buckets += len(set(s) | set(t))
        if result.levels == 1:
            result.source_rows = sum(n for n, _ in s.values())
            result.target_rows = sum(n for n, _ in t.values())
        differing = sorted(b for b in set(s) | set(t) if s.get(b) != t.get(b))
        size = {b: max(s.get(b, (0, 0))[0], t.get(b, (0, 0))[0]) for b in differing}
        large = [b for b in differing if size[b] > settings.leaf_rows and level.splittable]
        small = []
        for b in (b for b in differing if b not in large):
            if budget < size[b]:  # a table that differs almost everywhere is not copied to the worker
                result.partial = True
                break
            budget -= size[b]
            small.append(b)
        if small:
            leaves.append((level, small))
        if not large or result.partial:
            break
        factor = max(2, min(1024, math.ceil(max(size[b] for b in large) * 4 / settings.leaf_rows)))
        source_where, target_where = level.where(source, source_key, large), level.where(target, target_key, large)
        level = level.split(factor, large)

    # level 3: rows of the small differing segments
    source_rows: dict[KeyTuple, Any] = {}
    target_rows: dict[KeyTuple, Any] = {}
    for leaf_level, buckets in leaves:
        s_rows, t_rows = _both(
            partial(source.row_hashes, key_columns, source_hash, leaf_level.where(source, source_key, buckets)),
            partial(target.row_hashes, key_columns, target_hash, leaf_level.where(target, target_key, buckets)),
        )
        source_rows.update(s_rows)
        target_rows.update(t_rows)
    result.rows_fetched = len(source_rows) + len(target_rows)
    found = _differences(source_rows, target_rows)
    commit_column = "_cdc_commit_ts" if "_cdc_commit_ts" in target_kinds else None  # the target row's position
    differences = _explain(
        found,
        key_columns,
        source_cols,
        target_cols,
        source,
        target,
        settings,
        updated_at_column,
        result,
        sleep,
        commit_column,
    )

    for d in differences:
        if d.lag:
            result.lag += 1
        else:
            setattr(result, d.kind, getattr(result, d.kind) + 1)
    ordered = sorted(differences, key=lambda d: (d.lag, tuple(_sortable(v) for v in d.key.values())))
    result.sample = ordered[: settings.sample_keys]
    result.differences = ordered
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _same_kinds_for(target: Side, source_kinds: dict) -> dict:
    """Kinds for an absent target: the source's (BigQuery would hold DATETIME as TIMESTAMP)."""
    if target.dialect.engine == "bigquery":
        return {n: ("timestamp" if k == "datetime" else k, t) for n, (k, t) in source_kinds.items()}
    return dict(source_kinds)


def _sortable(value: Any) -> tuple:
    return (type(value).__name__, value)


def _differences(source_rows: dict, target_rows: dict) -> dict[KeyTuple, str]:
    out: dict[KeyTuple, str] = {}
    for key, row_hash in source_rows.items():
        other = target_rows.get(key)
        if other is None:
            out[key] = "missing"
        elif other != row_hash:
            out[key] = "changed"
    for key in target_rows.keys() - source_rows.keys():
        out[key] = "extra"
    return out


def commit_step(watermark: dt.datetime | None) -> dt.timedelta:
    """The precision commit times have: whole seconds when the newest one has no fraction (binlog
    and DMS commit times), else microseconds."""
    whole = watermark is not None and watermark.microsecond == 0
    return dt.timedelta(seconds=1) if whole else dt.timedelta(microseconds=1)


def _truncated(value: dt.datetime, step: dt.timedelta) -> dt.datetime:
    return value.replace(microsecond=0) if step == dt.timedelta(seconds=1) else value


def is_lag(updated_at: Any, row_commit: Any, watermark: dt.datetime | None) -> bool:
    """Whether a differing row may be replication lag: its source update time, at the precision
    the commit times have, is not older than the target's watermark, and the target's row does
    not already hold a change of that time (then its change was loaded: a difference is drift)."""
    if updated_at is None or watermark is None:
        return False
    changed = _truncated(key_token(updated_at), commit_step(watermark))
    if changed < watermark:
        return False
    return row_commit is None or key_token(row_commit) < changed


def repair_stamp(row_commit: Any, watermark: dt.datetime | None) -> dt.datetime | None:
    """The commit time a repair row for this key needs: one step of the commit times' precision
    after what the target holds for it (its row, else the watermark, which covers a tombstone),
    so it wins there without moving the watermark past changes still in flight."""
    base = key_token(row_commit) if row_commit is not None else watermark
    return base + commit_step(watermark) if base is not None else None


def _explain(
    found: dict[KeyTuple, str],
    key_columns: list[str],
    source_cols: list[HashColumn],
    target_cols: list[HashColumn],
    source: Side,
    target: Side,
    settings: Settings,
    updated_at_column: str | None,
    result: Comparison,
    sleep: Callable[[float], None],
    commit_column: str | None = None,
) -> list[Difference]:
    """Name the changed columns; tell lag from drift (update time vs watermark, then a re-check)."""
    watermark = target.watermark()
    result.watermark = watermark.isoformat() if watermark else None
    keys = list(found)[: settings.max_detail_keys]
    details = _column_details(
        keys, key_columns, source_cols, target_cols, source, target, updated_at_column, commit_column=commit_column
    )
    differences = []
    for key, kind in found.items():
        columns, updated_at, _, row_commit = details.get(key, ([], None, kind, None))
        differences.append(
            Difference(
                dict(zip(key_columns, key, strict=True)),
                kind,
                columns,
                lag=is_lag(updated_at, row_commit, watermark),
                stamp=repair_stamp(row_commit, watermark),
            )
        )

    pending = [d for d in differences if not d.lag]
    if pending and settings.recheck_seconds > 0:
        sleep(settings.recheck_seconds)
        watermark = target.watermark()
        keys = [tuple(d.key.values()) for d in pending]
        again = _column_details(
            keys,
            key_columns,
            source_cols,
            target_cols,
            source,
            target,
            updated_at_column,
            recheck=True,
            commit_column=commit_column,
        )
        for d in pending:
            state = again.get(tuple(d.key.values()))
            if state is None:  # equal now: it was lag, and the target has caught up
                d.lag = True
            else:
                d.kind, d.columns = state[2], state[0]
                d.lag = is_lag(state[1], state[3], watermark)
                d.stamp = repair_stamp(state[3], watermark)
    return differences


def _column_details(
    keys: list[KeyTuple],
    key_columns: list[str],
    source_cols: list[HashColumn],
    target_cols: list[HashColumn],
    source: Side,
    target: Side,
    updated_at_column: str | None,
    recheck: bool = False,
    commit_column: str | None = None,
) -> dict[KeyTuple, tuple]:
    """Per key that still differs: (differing column names, source update time, kind, commit time
    of the target's row). When re-checking, keys that agree now are left out."""
    if not keys:
        return {}
    extra = [updated_at_column] if updated_at_column else []
    target_extra = [commit_column] if commit_column else []
    s, t = _both(
        lambda: source.row_values(key_columns, source_cols, keys, extra),
        lambda: target.row_values(key_columns, target_cols, keys, target_extra),
    )
    out: dict[KeyTuple, tuple] = {}
    names = [c.name for c in source_cols]
    for key in keys:
        s_row, t_row = s.get(key), t.get(key)
        updated_at = s_row[len(names)] if (s_row is not None and extra) else None
        row_commit = t_row[len(names)] if (t_row is not None and target_extra) else None
        if s_row is None and t_row is None:
            continue
        if s_row is None or t_row is None:
            out[key] = ([], updated_at, "extra" if s_row is None else "missing", row_commit)
            continue
        columns = [n for n, a, b in zip(names, s_row, t_row, strict=False) if a != b]
        if columns or not recheck:
            out[key] = (columns, updated_at, "changed", row_commit)
    return out
