"""A small report per reconciliation run: Markdown (task log, S3) and HTML (S3, a browser)."""

from __future__ import annotations

import html
import re

_STATUS_MARK = {"in_sync": "✅ in sync", "lag": "⏳ lag only", "drift": "❌ drift"}


def _keys(row: dict, limit: int = 10) -> str:
    parts = []
    for d in [d for d in row["sample_keys"] if not d.get("lag")][:limit]:
        key = ", ".join(f"{k}={v}" for k, v in d["key"].items())
        parts.append(f"{key} {d['kind']}" + (f" ({', '.join(d['columns'])})" if d.get("columns") else ""))
    return "; ".join(parts)


_HEADER = (
    "table",
    "target",
    "status",
    "source rows",
    "target rows",
    "missing",
    "extra",
    "changed",
    "lag",
    "watermark",
    "seconds",
    "differing keys",
)


def _cells(row: dict, key_limit: int) -> list:
    """One comparison's cells, in the order of _HEADER."""
    return [
        row["table_name"],
        row["target"],
        _STATUS_MARK.get(row["status"], row["status"]),
        row["source_rows"],
        row["target_rows"],
        row["missing_rows"],
        row["extra_rows"],
        row["changed_rows"],
        row["lag_rows"],
        row["watermark"] or "",
        f"{float(row['seconds']):.2f}",
        _keys(row, limit=key_limit),
    ]


def markdown(pipeline: str, run_id: str, rows: list[dict]) -> str:
    lines = [f"# Reconciliation of `{pipeline}` — run `{run_id}`", ""]
    if not rows:
        return "\n".join(lines + ["No comparison stored for this run (see the task logs)."]) + "\n"
    drift = sum(r["status"] == "drift" for r in rows)
    lines += [
        f"{len(rows)} comparison(s), {drift} with drift.",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|---|--:|---|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", r"\|") for c in _cells(r, key_limit=10)) + " |")
    return "\n".join(lines) + "\n"


def html_page(pipeline: str, run_id: str, rows: list[dict]) -> str:
    body = []
    for r in rows:
        cells = _cells(r, key_limit=50)
        body.append(
            f'<tr class="{html.escape(r["status"])}">'
            + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + "</tr>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cdc-sync reconciliation {html.escape(pipeline)}</title>
<style>body{{font-family:sans-serif}} td,th{{border:1px solid #ccc;padding:4px 8px}} table{{border-collapse:collapse}}
tr.drift{{background:#fdd}} tr.lag{{background:#ffd}} tr.in_sync{{background:#dfd}}</style></head>
<body><h1>Reconciliation of {html.escape(pipeline)}</h1><p>run {html.escape(run_id)}</p>
<table><tr>{"".join(f"<th>{h}</th>" for h in _HEADER)}</tr>
{chr(10).join(body) or '<tr><td colspan="12">no comparison stored for this run</td></tr>'}
</table></body></html>
"""


def report_key(prefix: str, pipeline: str, run_id: str, extension: str) -> str:
    safe_run = re.sub(r"[^A-Za-z0-9_.=-]", "_", run_id)
    return f"{prefix}{pipeline}/{safe_run}.{extension}"
