"""Write docs/configuration.md from the pipelines JSON schema (`--check`: fail when it is stale).

The schema is the one source of truth for what `config/pipelines.yaml` accepts, and the
dataclasses of `cdc_sync.config` for the defaults they apply; this page is generated from both
so that neither can drift from it. tests/unit/test_docs.py runs `--check`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins"))

from cdc_sync import config  # noqa: E402  (the plugins folder is put on sys.path just above)

SCHEMA = REPO / "plugins" / "cdc_sync" / "schemas" / "pipelines.schema.json"
OUTPUT = REPO / "docs" / "configuration.md"

# Which dataclass of cdc_sync.config applies the defaults of each section.
DEFAULTS_FROM: dict[str, type] = {
    "pipelines[]": config.Pipeline,
    "pipelines[].source": config.LandingSource,
    "pipelines[].source.csv": config.DmsCsvSettings,
    "pipelines[].source.dynamodb": config.DynamoDbStreamSettings,
    "pipelines[].tables[]": config.TableSpec,
    "pipelines[].targets.bigquery": config.BigQueryTarget,
    "pipelines[].targets.aurora": config.AuroraTarget,
    "pipelines[].options": config.Options,
    "pipelines[].reconcile": config.Reconcile,
}

# Names for the value types in $defs, shown in the type column and explained at the end.
VALUE_TYPES = {
    "identifier": "plain name",
    "project": "project id",
    "s3_prefix": "S3 prefix",
    "delivery_prefix": "delivery prefix",
}

HEADER = """# Configuration reference

`config/pipelines.yaml` (or the file `CDC_SYNC_CONFIG` names) declares the pipelines; each becomes
the DAG `cdc_<name>` (and `cdc_<name>_reconcile` when it has a `reconcile` section). Unknown keys,
duplicate keys and values outside these rules are refused when the DAG file parses, with a message
that names the pipeline and the field. A first pipeline step by step is in the
[README](../README.md#a-first-real-pipeline).

This page is generated from `plugins/cdc_sync/schemas/pipelines.schema.json` (and the defaults in
`plugins/cdc_sync/config.py`) by `python tools/config_reference.py` (`make docs`); a test fails
when it is stale.
"""


def _ref_name(node: dict) -> str | None:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = {**schema["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type_of(schema: dict, node: dict) -> str:
    name = _ref_name(node)
    if name in VALUE_TYPES:
        return f"[{VALUE_TYPES[name]}](#value-types)"
    node = _resolve(schema, node)
    if "enum" in node:
        return " or ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    kinds = node.get("type", "")
    if isinstance(kinds, list):
        kinds = " or ".join(kinds)
    if kinds == "array":
        return f"list of {_type_of(schema, node.get('items', {}))}"
    if kinds == "object" and "properties" in node:
        return "mapping (below)"
    if not kinds and ("oneOf" in node or "anyOf" in node):
        return " or ".join(_type_of(schema, n) for n in node.get("oneOf", node.get("anyOf", [])))
    return kinds or "any"


def _limits(node: dict) -> str:
    parts = []
    for key, word in (
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("exclusiveMinimum", ">"),
        ("minItems", "items ≥"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
    ):
        if key in node:
            parts.append(f"{word} {node[key]}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _defaults(path: str) -> dict[str, Any]:
    """The defaults the section's dataclass applies (none for `None`, empty tuples and empty text)."""
    cls = DEFAULTS_FROM.get(path)
    if cls is None:
        return {}
    return {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING and f.default not in (None, (), "")
    }


def _anchor(path: str) -> str:
    return "".join(c for c in path.lower() if c.isalnum() or c in "-_")


def _section(schema: dict, path: str, node: dict, out: list[str]) -> None:
    node = _resolve(schema, node)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        _section(schema, path + "[]", node["items"], out)
        return
    properties = node.get("properties")
    if not properties:
        return
    required = set(node.get("required", []))
    defaults = _defaults(path)
    out += ["", f"## `{path}`", ""]
    if node.get("description"):
        out += [_cell(node["description"]), ""]
    out += ["| key | type | required | default | meaning |", "|---|---|---|---|---|"]
    nested = []
    for key, child in properties.items():
        child_resolved = _resolve(schema, child)
        if key in defaults and key not in required:
            default = f"`{json.dumps(defaults[key], ensure_ascii=False)}`"
        elif "default" in child_resolved:
            default = f"`{json.dumps(child_resolved['default'], ensure_ascii=False)}`"
        else:
            default = ""
        meaning = child_resolved.get("description", "")
        limits = _limits(child_resolved)
        if limits:
            meaning = f"{meaning} ({limits})" if meaning else limits
        shown = (
            f"[`{key}`](#{_anchor(f'{path}.{key}')})"
            if child_resolved.get("properties")
            or (
                isinstance(child_resolved.get("items"), dict)
                and _resolve(schema, child_resolved["items"]).get("properties")
            )
            else f"`{key}`"
        )
        out.append(
            f"| {shown} | {_cell(_type_of(schema, child))} | {'yes' if key in required else ''} "
            f"| {_cell(default)} | {_cell(meaning)} |"
        )
        nested.append((f"{path}.{key}", child))
    for child_path, child in nested:
        _section(schema, child_path, child, out)


def _value_types(schema: dict, out: list[str]) -> None:
    out += ["", "## Value types", "", "| type | what it takes | pattern |", "|---|---|---|"]
    for name, shown in VALUE_TYPES.items():
        node = schema["$defs"][name]
        out.append(f"| {shown} | {_cell(node.get('description', ''))} | `{_cell(node['pattern'])}` |")


def render() -> str:
    """The page's text, from the schema and the config dataclasses as they are now."""
    schema = json.loads(SCHEMA.read_text())
    out = [HEADER.rstrip()]
    for key, child in schema["properties"].items():
        _section(schema, key, child, out)
    _value_types(schema, out)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the page, or with --check only compare it."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/configuration.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            sys.stderr.write(f"{OUTPUT.relative_to(REPO)} is stale: run `python tools/config_reference.py`\n")
            return 1
        return 0
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
