"""The IAM policy documents in deploy/iam/ are valid and cover exactly what the library writes and Aurora reads.

Where the library writes is read from the code: every S3 write call in plugins/cdc_sync (the
write operations of botocore's S3 model, and boto3's managed uploads) must be one of WRITE_SITES,
each tied to the setting that names its prefix. The keys each site writes are then built from
pipelines (the repository's config and one of each kind) with the library's own key functions and
settings, and checked against the policies with IAM's evaluation rules (explicit Deny wins, `*`
spans `/`, a condition on a key the request lacks does not match).
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from cdc_sync.config import Pipeline, load_pipelines, parse_pipelines
from cdc_sync.reconcile.repair import repair_file_name
from cdc_sync.reconcile.report import report_key
from cdc_sync.sources.audit_log.trail import pipeline_trail

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "plugins" / "cdc_sync"
POLICIES = REPO / "deploy" / "iam"
EXECUTION_ROLE = POLICIES / "mwaa-execution-role.json"
AURORA_ROLE = POLICIES / "aurora-load-from-s3-role.json"

# Every place the library writes to S3: (file, function) -> what it writes, and the setting or
# key function in that file that says where.
WRITE_SITES = {
    ("sources/landed.py", "write_quarantine_marker"): ("quarantine", "quarantine_prefix"),
    ("targets/aurora/loader.py", "_apply_chunk"): ("staging", "staging_prefix"),
    ("targets/aurora/append.py", "_source"): ("staging", "staging_prefix"),
    ("orchestration/tasks.py", "write_report"): ("reports", "reports_prefix"),
    # the capture steps' checkpoints (DynamoDB stream, binlog, audit trail): JSON at their checkpoint_key
    ("sources/s3_objects.py", "write_json"): ("checkpoints", "checkpoint"),
    ("sources/dynamodb_stream/capture.py", "land"): ("change_files", "table_prefix"),
    ("reconcile/repair.py", "emit_repair_file"): ("change_files", "table_prefix"),
    ("sources/audit_log/trail.py", "_report_problems"): ("checkpoints", "problems_prefix"),
    ("sources/audit_log/trail.py", "capture_trail"): ("change_files", "table_prefix"),
    ("sources/binlog/capture.py", "land"): ("change_files", "table_prefixes"),
}

# One pipeline of each kind that writes something (defaults for every prefix), next to the
# repository's config/pipelines.yaml.
KINDS = {
    "pipelines": [
        {
            "name": "shop_merge",
            "source": {"kind": "dms", "bucket": "landing-a", "prefix": "dms"},
            "tables": [{"schema": "shop", "name": "customers", "primary_key": ["id"]}],
            "targets": {"aurora": {"database": "shop", "method": "aurora_s3"}},
            "reconcile": {"source_conn_id": "shop_source"},
        },
        {
            "name": "clicks_append",
            "source": {"kind": "firehose", "bucket": "landing-b", "prefix": "processed/!{timestamp:yyyy}/"},
            "tables": [{"schema": "web", "name": "clicks", "columns": ["event_id", "page"]}],
            "targets": {"aurora": {"database": "web", "mode": "append", "method": "aurora_s3"}},
        },
        {
            "name": "web_sessions",
            "source": {
                "kind": "dynamodb_stream",
                "bucket": "landing-c",
                "prefix": "ddb",
                "dynamodb": {"stream": "webSessions"},
            },
            "tables": [
                {"schema": "web", "name": "sessions", "primary_key": ["id"], "columns": ["id varchar(64)"]},
            ],
            "targets": {"bigquery": {"project": "local", "dataset": "web"}},
            "reconcile": {"source_conn_id": "web_source"},
        },
        {
            "name": "shop_binlog",
            "source": {"kind": "binlog", "bucket": "landing-e", "prefix": "binlog", "binlog": {"conn_id": "shop"}},
            "tables": [{"schema": "shop", "name": "orders", "primary_key": ["id"]}],
            "targets": {"aurora": {"database": "shop"}, "bigquery": {"project": "local", "dataset": "shop"}},
            "reconcile": {"source_conn_id": "shop"},
        },
        {
            "name": "shop_audit",
            "source": {"kind": "audit_log", "bucket": "landing-d", "prefix": "audit", "audit_log": {"stream": "a"}},
            "tables": [{"schema": "audit", "name": "shop"}],
            "targets": {"bigquery": {"project": "local", "dataset": "ops"}},
        },
    ]
}

_ARN = re.compile(r"^arn:aws:[a-z0-9-]+:[A-Z_a-z0-9*-]*:[A-Z_0-9*]*:.+$")
_ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z*]+$")


def _statements(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["Statement"]


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _landing_prefix(pipeline: Pipeline) -> str:
    """What LANDING_PREFIX stands for: the source prefix up to its first Firehose expression."""
    return pipeline.source.prefix.split("!{")[0].strip("/")


def _allows(path: Path, pipeline: Pipeline, action: str, resource: str, context: dict | None = None) -> bool:
    """IAM's answer for one request: an explicit Deny wins, else any Allow, else no."""

    def fill(text: str) -> str:
        return text.replace("LANDING_BUCKET", pipeline.source.bucket).replace(
            "LANDING_PREFIX", _landing_prefix(pipeline)
        )

    def matches(statement: dict) -> bool:
        if not any(fnmatch.fnmatch(action.lower(), a.lower()) for a in _listed(statement.get("Action", []))):
            return False
        if "Resource" in statement:
            if not any(fnmatch.fnmatchcase(resource, fill(r)) for r in _listed(statement["Resource"])):
                return False
        elif any(fnmatch.fnmatchcase(resource, fill(r)) for r in _listed(statement["NotResource"])):
            return False
        for operator, keys in statement.get("Condition", {}).items():
            assert operator == "StringLike", f"the test evaluates StringLike conditions only, not {operator}"
            for key, patterns in keys.items():
                if key not in (context or {}) or not any(
                    fnmatch.fnmatchcase(context[key], fill(p)) for p in _listed(patterns)
                ):
                    return False
        return True

    statements = _statements(path)
    if any(s["Effect"] == "Deny" and matches(s) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and matches(s) for s in statements)


def _object(pipeline: Pipeline, key: str) -> str:
    return f"arn:aws:s3:::{pipeline.source.bucket}/{key}"


def _pipelines() -> list[Pipeline]:
    return load_pipelines(REPO / "config" / "pipelines.yaml") + parse_pipelines(KINDS)


def _written_keys(pipeline: Pipeline) -> dict[str, list[str]]:
    """A key of each kind the pipeline writes, built as the write sites build them."""
    source, now = pipeline.source, datetime(2026, 12, 6, 13, 0, tzinfo=UTC)
    landed = [f"{_landing_prefix(pipeline)}/2026/12/06/13/stream-1-2026-12-06-13-00-00-abc"] + [
        source.table_prefix(t) + "20261206-130000000.parquet" for t in pipeline.tables if source.kind != "firehose"
    ]
    keys: dict[str, list[str]] = {"quarantine": []}
    for target in ("bigquery", "aurora"):
        if getattr(pipeline, target) is not None:
            middle = "" if target == "bigquery" else f"{target}/"
            keys["quarantine"] += [
                f"{source.quarantine_prefix.rstrip('/')}/{pipeline.name}/{middle}{k}.json" for k in landed
            ]
    if pipeline.aurora is not None and pipeline.aurora.method == "aurora_s3":
        staging = f"{pipeline.aurora.staging_prefix.rstrip('/')}/{pipeline.name}/"
        keys["staging"] = [f"{staging}{k}.000000000001.csv" for k in landed] + [f"{staging}{k}.csv" for k in landed]
    if pipeline.reconcile is not None:
        keys["reports"] = [
            report_key(pipeline.reconcile.reports_prefix, pipeline.name, "scheduled__2026-12-06", "html")
        ]
    change_files = []
    if pipeline.reconcile is not None and source.kind != "dynamodb_stream":  # repair files
        change_files += [source.table_prefix(t) + repair_file_name(now) for t in pipeline.tables]
    if source.dynamodb is not None:
        keys["checkpoints"] = [source.dynamodb.checkpoint_key(pipeline.name, t) for t in pipeline.tables]
        change_files += [source.table_prefix(t) + "20261206-130000000.parquet" for t in pipeline.tables]
    if source.binlog is not None:  # the binlog capture: its checkpoint, snapshot and change files
        keys["checkpoints"] = [source.binlog.checkpoint_key(pipeline.name)]
        change_files += [
            source.table_prefix(t) + n
            for t in pipeline.tables
            for n in ("LOAD00000001.parquet", "20261206-130000000.parquet")
        ]
    if source.kind == "audit_log":  # the audit trail: change files, positions and problem reports
        trail = pipeline_trail(pipeline)
        keys["checkpoints"] = [trail.checkpoint_key, f"{trail.problems_prefix}20261206-130000000-1.json"]
        change_files.append(trail.table_prefix + "20261206-130000000.parquet")
    if change_files:
        keys["change_files"] = change_files
    return keys


def _s3_write_calls() -> dict[tuple[str, str], list[int]]:
    """(file, enclosing function) -> lines of every S3 write call in the library."""
    model = botocore.session.get_session().get_service_model("s3")
    writes = {
        xform_name(name) for name in model.operation_names if not name.startswith(("Get", "List", "Head", "Select"))
    } | {"upload_file", "upload_fileobj", "copy"}  # boto3's managed transfers
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                name = node.func.attr
                if name not in writes or (name == "copy" and len(node.args) + len(node.keywords) < 3):
                    continue  # dict.copy() and friends
                found.setdefault((path.relative_to(LIBRARY).as_posix(), function.name), []).append(node.lineno)
    return found


@pytest.mark.parametrize("path", [EXECUTION_ROLE, AURORA_ROLE], ids=lambda p: p.name)
def test_each_document_is_an_iam_policy(path):
    document = json.loads(path.read_text(encoding="utf-8"))
    assert set(document) == {"Version", "Statement"} and document["Version"] == "2012-10-17"
    sids = [s.get("Sid") for s in document["Statement"]]
    assert all(sid and re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids) and len(set(sids)) == len(sids)
    for statement in document["Statement"]:
        where = f"{path.name} {statement['Sid']}"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "NotResource", "Condition"}, where
        assert statement["Effect"] in ("Allow", "Deny"), where
        assert ("Resource" in statement) != ("NotResource" in statement), where
        for action in _listed(statement["Action"]):
            assert _ACTION.match(action) and not action.endswith(":*"), f"{where}: action {action!r}"
        for resource in _listed(statement.get("Resource", statement.get("NotResource"))):
            assert resource == "*" or _ARN.match(resource), f"{where}: resource {resource!r}"
        if statement["Effect"] == "Allow" and any(a.startswith("s3:Put") for a in _listed(statement["Action"])):
            assert all(r.endswith("/*") and r.count("/") >= 2 for r in _listed(statement["Resource"])), (
                f"{where}: S3 writes only under named prefixes, never the whole bucket"
            )


def test_every_s3_write_in_the_library_is_a_known_site():
    found = _s3_write_calls()
    assert set(found) == set(WRITE_SITES), (
        "S3 writes changed: add the new site to WRITE_SITES and its prefix to deploy/iam/*.json and docs/mwaa.md "
        f"(found {sorted(found)})"
    )
    for (file, _function), (_kind, setting) in WRITE_SITES.items():
        assert setting in (LIBRARY / file).read_text(encoding="utf-8"), f"{file} no longer uses {setting}"


@pytest.mark.parametrize("pipeline", _pipelines(), ids=lambda p: p.name)
def test_the_execution_role_may_write_every_key_the_pipeline_writes(pipeline):
    keys = _written_keys(pipeline)
    kinds = {kind for kind, _ in WRITE_SITES.values()}
    assert set(keys) <= kinds
    for kind, written in keys.items():
        for key in written:
            assert _allows(EXECUTION_ROLE, pipeline, "s3:PutObject", _object(pipeline, key)), f"{kind}: {key}"
            assert _allows(EXECUTION_ROLE, pipeline, "s3:GetObject", _object(pipeline, key)), f"{kind}: {key}"
    for key in ("other/file.parquet", pipeline.source.quarantine_prefix.rstrip("/") + "-other/x", "cdc-sync/other/x"):
        assert not _allows(EXECUTION_ROLE, pipeline, "s3:PutObject", _object(pipeline, key)), key
    assert _allows(EXECUTION_ROLE, pipeline, "s3:ListBucket", f"arn:aws:s3:::{pipeline.source.bucket}")
    assert not _allows(EXECUTION_ROLE, pipeline, "s3:DeleteObject", _object(pipeline, "cdc-sync/staging/x"))


@pytest.mark.parametrize("pipeline", _pipelines(), ids=lambda p: p.name)
def test_the_aurora_role_reads_what_load_data_from_s3_names_and_nothing_the_library_keeps(pipeline):
    keys = _written_keys(pipeline)
    bucket = f"arn:aws:s3:::{pipeline.source.bucket}"
    if pipeline.aurora is not None and pipeline.aurora.method == "aurora_s3":
        loaded = keys["staging"]
        if pipeline.source.kind == "firehose":  # backslash-escaped, uncompressed objects load as they landed
            loaded = [*loaded, f"{_landing_prefix(pipeline)}/2026/12/06/13/stream-1-2026-12-06-13-00-00-abc"]
        for key in loaded:
            assert _allows(AURORA_ROLE, pipeline, "s3:GetObject", _object(pipeline, key)), key
            assert _allows(AURORA_ROLE, pipeline, "s3:ListBucket", bucket, {"s3:prefix": key}), key
    for kind in ("quarantine", "reports", "checkpoints"):
        for key in keys.get(kind, []):
            assert not _allows(AURORA_ROLE, pipeline, "s3:GetObject", _object(pipeline, key)), f"{kind}: {key}"
    assert not _allows(AURORA_ROLE, pipeline, "s3:ListBucket", bucket)  # only the prefixes it loads from
    for statement in _statements(AURORA_ROLE):
        assert set(_listed(statement["Action"])) <= {"s3:GetObject", "s3:ListBucket"}
