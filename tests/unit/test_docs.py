"""README.md and docs/*.md are checked like code: what they tell a reader to run, runs.

Convention for fenced blocks (every fence must name its language):
- ```yaml   pipeline configuration, validated through `cdc_sync.config.parse_pipelines`: a
            whole file (`pipelines:`), a list of pipelines, or a fragment of one pipeline
            (keys such as `source`, `tables`, `targets`, `reconcile`; indented as in the file),
            which is laid over a minimal DMS pipeline before it is validated;
- ```bash   commands a reader runs, one per line (`&&` chains, `#` comments): `make X` is run
            as `make -n X`; `airflow …` is parsed by Airflow's own CLI parser (options and
            values checked, nothing executed; `--conf` values must be JSON); `python -m
            cdc_sync…` is run with `--help` and every option it names must be in that help;
            `cd DIR` must name a folder; `zip` builds the archive in a temporary folder;
- ```text   (or `json`, `sql`) is shown, not run.
Every relative link must point to a file that exists, and a `#fragment` to one of its
headings; the troubleshooting table of docs/operations.md must quote messages the code
raises; docs/configuration.md must be what tools/config_reference.py generates now.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from cdc_sync.config import parse_pipelines

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHOWN_ONLY = {"text", "json", "sql"}
BASE_PIPELINE = {
    "name": "docs_example",
    "source": {"kind": "dms", "bucket": "docs-example", "prefix": "dms"},
    "tables": [{"schema": "shop", "name": "customers", "primary_key": ["id"]}],
    "targets": {"bigquery": {"project": "my-gcp-project", "dataset": "docs_example"}},
}


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown file."""

    path: Path
    line: int  # of the opening fence
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    found, lines, start, language, body = [], path.read_text().splitlines(), None, "", []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if start is None and stripped.startswith("```"):
            start, language, body, indent = number, stripped[3:].strip(), [], len(line) - len(line.lstrip())
        elif start is not None and stripped == "```":
            found.append(Block(path, start, language, textwrap.dedent("\n".join(body))))
            start = None
        elif start is not None:
            body.append(line[indent:] if line[:indent].strip() == "" else line)
    assert start is None, f"{path.relative_to(REPO)}:{start}: a fence that is never closed"
    return found


ALL_BLOCKS = [block for path in DOCS for block in _blocks(path)]


def _of(language: str) -> list:
    return [pytest.param(b, id=b.where) for b in ALL_BLOCKS if b.language == language]


def test_the_docs_exist_and_the_readme_is_a_guide_not_a_log():
    names = {p.name for p in DOCS}
    assert {"configuration.md", "operations.md", "design.md", "performance.md", "known-limits.md"} <= names
    lines = (REPO / "README.md").read_text().count("\n")
    assert 150 <= lines <= 250, f"README.md has {lines} lines; a guide of 150–250 lines, the rest in docs/"
    for name in ("performance.md", "known-limits.md"):
        text = (REPO / "docs" / name).read_text()
        dated = re.findall(r"\b20\d\d-\d\d-\d\d\b|\bDone \d|[Tt]ried by hand", text)
        assert not dated, f"docs/{name}: history belongs to git, not to the page: {dated}"


def test_every_fence_names_its_language():
    unnamed = [b.where for b in ALL_BLOCKS if not b.language]
    assert not unnamed, f"fences without a language (bash/yaml run, text is shown): {unnamed}"
    unknown = [f"{b.where} {b.language}" for b in ALL_BLOCKS if b.language not in SHOWN_ONLY | {"bash", "yaml"}]
    assert not unknown, f"fences of a language this test does not know: {unknown}"


def test_no_table_row_renders_as_a_paragraph():
    """A row separated from its table by a blank line becomes a paragraph with literal pipes,
    and a row with more cells than its header loses the rest."""
    for path in DOCS:
        lines = path.read_text().splitlines()
        inside, columns = False, 0
        for number, line in enumerate(lines, 1):
            if line.strip().startswith("```"):
                inside = not inside
            if inside or not line.startswith("|"):
                continue
            previous = lines[number - 2] if number > 1 else ""
            following = lines[number] if number < len(lines) else ""
            starts_table = re.match(r"^\|[-:| ]+\|$", following.strip()) is not None
            assert previous.startswith("|") or starts_table, (
                f"{path.relative_to(REPO)}:{number}: a table row outside a table (a blank line before it?)"
            )
            if starts_table:
                columns = _cells(line)
            assert _cells(line) == columns, (
                f"{path.relative_to(REPO)}:{number}: {_cells(line)} cells where the header has {columns} "
                "(a `|` inside a cell must be written `\\|`)"
            )


def _cells(row: str) -> int:
    return len(re.findall(r"(?<!\\)\|", row.strip())) - 1


@pytest.mark.parametrize("block", _of("yaml"))
def test_yaml_blocks_are_valid_pipeline_config(block: Block):
    document = yaml.safe_load(block.text)
    if isinstance(document, dict) and "pipelines" in document:
        pipelines = parse_pipelines(document, block.where)
    elif isinstance(document, list):
        pipelines = parse_pipelines({"pipelines": document}, block.where)
    else:
        assert isinstance(document, dict), f"{block.where}: neither config nor a fragment of a pipeline"
        pipeline = {**BASE_PIPELINE, **document}
        if "source" in document:
            pipeline["source"] = {**BASE_PIPELINE["source"], **document["source"]}
        pipelines = parse_pipelines({"pipelines": [pipeline]}, block.where)
    assert pipelines


def _commands(block: Block) -> list[list[str]]:
    """The block's commands, each as its words (comments, continuations and `&&` handled)."""
    text = block.text.replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in words + ["&&"]:
            if word == "&&":
                if command:
                    commands.append(command)
                command = []
            else:
                command.append(word)
    return commands


@cache
def _airflow_parser():
    from airflow.cli.cli_parser import get_parser

    return get_parser()


def _check_airflow(words: list[str], where: str) -> None:
    parser = _airflow_parser()
    try:
        parsed = parser.parse_args(words[1:])
    except SystemExit as error:
        pytest.fail(f"{where}: Airflow's CLI refuses {shlex.join(words)} (exit {error.code})")
    assert callable(getattr(parsed, "func", None)), f"{where}: {shlex.join(words)} names no Airflow command"
    for option in ("--conf", "--dag-run-conf", "--conn-extra"):
        if option in words:
            json.loads(words[words.index(option) + 1])


@cache
def _help_of(*module_and_subcommand: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *module_and_subcommand, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**_env(), "PYTHONPATH": str(REPO / "plugins")},
        timeout=120,
    )
    assert result.returncode == 0, f"python -m {' '.join(module_and_subcommand)} --help: {result.stderr[-2000:]}"
    return result.stdout


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def _check_python_module(words: list[str], where: str) -> None:
    assert words[1] == "-m" and words[2].startswith("cdc_sync."), f"{where}: run the library as python -m cdc_sync…"
    positionals = [w for w in words[3:4] if not w.startswith("-")]
    text = _help_of(words[2])
    for subcommand in positionals:
        assert subcommand in text, f"{where}: {words[2]} has no subcommand {subcommand!r}"
    for option in (w.split("=", 1)[0] for w in words[3:] if w.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
            f"{where}: {words[2]} --help does not know {option}"
        )


def _check_make(words: list[str], cwd: Path, where: str) -> None:
    result = subprocess.run(["make", "-n", *words[1:]], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert result.returncode == 0, f"{where}: make -n {' '.join(words[1:])}: {result.stderr[-2000:]}"


def _check_zip(words: list[str], cwd: Path, tmp_path: Path, where: str) -> None:
    assert words[1] == "-r", f"{where}: zip -r ARCHIVE FILES… expected"
    archive, inputs = tmp_path / Path(words[2]).name, words[3:]
    for name in inputs:
        assert (cwd / name).exists(), f"{where}: {name} does not exist in {cwd.relative_to(REPO)}"
    result = subprocess.run(["zip", "-q", "-r", str(archive), *inputs], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, f"{where}: {result.stderr}"
    names = set(zipfile.ZipFile(archive).namelist())
    if archive.name == "plugins.zip":  # MWAA: the library at the root, kept out of the plugin loader
        assert {".airflowignore", "cdc_sync/__init__.py", "cdc_sync/schemas/pipelines.schema.json"} <= names


@pytest.mark.parametrize("block", _of("bash"))
def test_shell_blocks_run_as_dry_runs(block: Block, tmp_path):
    cwd = REPO
    for words in _commands(block):
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value before a command
            words = words[1:]
        program = words[0]
        if program == "cd":
            cwd = (cwd / words[1]).resolve()
            assert cwd.is_dir(), f"{block.where}: cd {words[1]}: no such folder"
        elif program == "make":
            _check_make(words, cwd, block.where)
        elif program == "airflow":
            _check_airflow(words, block.where)
        elif program == "python":
            _check_python_module(words, block.where)
        elif program == "zip":
            _check_zip(words, cwd, tmp_path, block.where)
        else:
            pytest.fail(
                f"{block.where}: no rule to check {program!r}; add one to tests/unit/test_docs.py or "
                "show the block as text"
            )


def _headings(path: Path) -> set[str]:
    """GitHub's anchors for the file's headings."""
    anchors, inside = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
        if not inside and (match := re.match(r"^#{1,6} (.+)$", line)):
            title = re.sub(r"[^\w\- ]", "", match[1].strip().lower().replace("`", ""))
            anchors.add(title.replace(" ", "-"))
    return anchors


def test_relative_links_point_to_files_and_headings():
    broken = []
    for path in DOCS:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            file_part, _, fragment = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{path.relative_to(REPO)}: {target} (no such file)")
            elif fragment and linked.suffix == ".md" and fragment not in _headings(linked):
                broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def _library_text() -> str:
    """The library's source with implicitly joined string literals joined, and its schema."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "plugins" / "cdc_sync").rglob("*.py")))
    text = re.sub(r"""(["'])\s*\n\s*f?(["'])""", "", text)  # "…"\n  f"…" → one literal
    return text + (REPO / "plugins" / "cdc_sync" / "schemas" / "pipelines.schema.json").read_text()


def test_troubleshooting_quotes_messages_the_code_raises():
    page = (REPO / "docs" / "operations.md").read_text()
    table = page[page.index("## Troubleshooting") :]
    first_cells = [
        re.sub(r"\(e\.g\..*?\)", "", row.split(" | ")[0]) for row in table.splitlines()[1:] if row.startswith("| `")
    ]
    messages = [message for cell in first_cells for message in re.findall(r"`([^`]+)`", cell)]
    assert len(messages) >= 20, "the troubleshooting table is keyed by messages in backquotes"
    source = _library_text()
    unknown = []
    for message in messages:
        for fragment in re.split(r"…|<[^>]*>", message):
            fragment = fragment.strip(" '.;:`")
            if len(fragment) >= 8 and fragment not in source:
                unknown.append(f"{message!r}: {fragment!r}")
    assert not unknown, "messages the code does not raise (reworded?):\n" + "\n".join(unknown)


def test_configuration_reference_is_generated_from_the_schema_as_it_is():
    from tools import config_reference

    current = (REPO / "docs" / "configuration.md").read_text()
    assert current == config_reference.render(), (
        "docs/configuration.md is stale: run `python tools/config_reference.py` (make docs)"
    )
    documented = set(re.findall(r"^\| (?:\[)?`(\w+)`", current, flags=re.M))
    schema = json.loads((REPO / "plugins" / "cdc_sync" / "schemas" / "pipelines.schema.json").read_text())
    for name in ("stream", "max_fetch_rows", "widen_decimals", "csv_null_value", "load_connections"):
        assert name in documented
    assert "description" in schema["$defs"]["reconcile"]["properties"]["max_fetch_rows"]


def _marks(node: ast.AST) -> set[str]:
    """The names X of every `pytest.mark.X` inside the node."""
    return {
        n.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "mark"
    }


def test_tests_that_need_the_stack_or_dag_runs_carry_their_markers():
    """What docs/testing.md promises `make test-unit` (-m "not services and not airflow"): a test
    that uses the local stack is marked `services`, one that runs DAGs (`airflow_db`) `airflow`."""
    needs = {"stack": "services", "airflow_db": "airflow"}
    unmarked = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        module_marks = set().union(
            *(
                _marks(n.value)
                for n in tree.body
                if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
            )
        )
        functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        uses = {f.name: {a.arg for a in f.args.args} for f in functions}
        changed = True
        while changed:  # a fixture of the module that uses `stack` passes the need on
            changed = False
            for name, args in uses.items():
                inherited = set().union(*(uses[a] for a in args if a in uses and a != name)) & set(needs)
                if not inherited <= args:
                    args |= inherited
                    changed = True
        for function in functions:
            if not function.name.startswith("test_"):
                continue
            marks = module_marks | set().union(*(_marks(d) for d in function.decorator_list))
            for fixture, mark in needs.items():
                if fixture in uses[function.name] and mark not in marks:
                    unmarked.append(
                        f"{path.relative_to(REPO)}::{function.name} uses {fixture} without pytest.mark.{mark}"
                    )
    assert not unmarked, "\n".join(unmarked)
