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


def markdown(pipeline: str, run_id: str, rows: list[dict]) -> str:
    lines = [f"# Reconciliation of `{pipeline}` — run `{run_id}`", ""]
    if not rows:
        return "\n".join(lines + ["No comparison stored for this run (see the task logs)."]) + "\n"
    drift = sum(r["status"] == "drift" for r in rows)
    lines += [
        f"{len(rows)} comparison(s), {drift} with drift.",
        "",
        "| table | target | status | source rows | target rows | missing | extra | changed | lag | watermark | seconds | differing keys |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|---|--:|---|",
    ]
    for r in rows:
        cells = [
            r["table_name"],
            r["target"],
            _STATUS_MARK.get(r["status"], r["status"]),
            r["source_rows"],
            r["target_rows"],
            r["missing_rows"],
            r["extra_rows"],
            r["changed_rows"],
            r["lag_rows"],
            r["watermark"] or "",
            f"{float(r['seconds']):.2f}",
            _keys(r),
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def html_page(pipeline: str, run_id: str, rows: list[dict]) -> str:
    head = (
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
    body = []
    for r in rows:
        cells = [
            r["table_name"],
            r["target"],
            _STATUS_MARK.get(r["status"], r["status"]),
            r["source_rows"],
            r["target_rows"],
            r["missing_rows"],
            r["extra_rows"],
            r["changed_rows"],
            r["lag_rows"],
            r["watermark"] or "",
            f"{float(r['seconds']):.2f}",
            _keys(r, limit=50),
        ]
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
<table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>
{chr(10).join(body) or '<tr><td colspan="12">no comparison stored for this run</td></tr>'}
</table></body></html>
"""


def report_key(prefix: str, pipeline: str, run_id: str, extension: str) -> str:
    safe_run = re.sub(r"[^A-Za-z0-9_.=-]", "_", run_id)
    return f"{prefix}{pipeline}/{safe_run}.{extension}"
