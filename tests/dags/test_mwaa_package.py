"""The package `make mwaa-package` builds works in an Airflow home laid out as MWAA lays it out.

MWAA copies the bucket's `dags/` to /usr/local/airflow/dags, unzips plugins.zip into
/usr/local/airflow/plugins and sets PYTHONPATH to its own code only (/python); Airflow itself puts
the DAGs and plugins folders on sys.path. The test builds the package, lays it out that way in a
fresh AIRFLOW_HOME (defaults for the DAGs and plugins folders, no CDC_SYNC_* variable, an empty
folder as PYTHONPATH, a working directory outside the repository) and runs Airflow's plugin loader
and DagBag there in a fresh interpreter, twice: the first parse compiles the library (as MWAA's
first parse does), the second reads bytecode (as every later parse does). A second test starts
the DAG processor there on a metadata database of its own and asks the CLI for import errors.

It runs on the interpreter CDC_SYNC_MWAA_PYTHON names (one with MWAA's own package versions, see
docs/mwaa.md), else on Airflow 3.0.6, MWAA's version, when `.venv-airflow-3.0` exists (`make
test-airflow-3.0` runs the suite in it), else on the current interpreter's Airflow; it prints which.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools import mwaa_package

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]
_AF30_PYTHON = REPO / ".venv-airflow-3.0" / "bin" / "python"
# CDC_SYNC_MWAA_PYTHON: an interpreter with MWAA's own package set (docs/mwaa.md), else Airflow 3.0.6.
AIRFLOW_PYTHON = Path(
    os.environ.get("CDC_SYNC_MWAA_PYTHON") or (_AF30_PYTHON if _AF30_PYTHON.exists() else sys.executable)
).absolute()  # not resolved: a venv's python is a symlink to the base interpreter

_PROBE = r"""
import importlib.machinery, json, sys, time
from pathlib import Path

home = Path(sys.argv[1]).resolve()
before = set(sys.modules)
import airflow
from airflow import settings
import airflow.plugins_manager as plugins_manager

loaded_before_plugins = set(sys.modules)
start = time.perf_counter()
plugins_manager.ensure_plugins_loaded()
plugin_seconds = time.perf_counter() - start
by_plugin_loader = sorted(m for m in set(sys.modules) - loaded_before_plugins if "." not in m)
plugin_errors = (
    plugins_manager.get_import_errors() if hasattr(plugins_manager, "get_import_errors")
    else dict(getattr(plugins_manager, "import_errors", {}))
)
# What the DAG processor has imported when it forks the process that parses a file: without
# it, the parse would be charged with Airflow's own models (~1.2 s on Airflow 3.0, pulled in
# by the SDK's decorators), which the processor loaded long before.
import airflow.dag_processing.manager, airflow.dag_processing.processor
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.0
    from airflow.models.dagbag import DagBag

bag = DagBag(dag_folder=settings.DAGS_FOLDER)  # examples off: AIRFLOW__CORE__LOAD_EXAMPLES
stats = [
    {"file": Path(s.file).name, "seconds": s.duration.total_seconds(), "dags": s.dag_num}
    for s in bag.dagbag_stats
]

import cdc_sync.config, cdc_sync.sql
import importlib
# Tasks import more of the library than parsing does: every module must import here too.
library = home / "plugins" / "cdc_sync"
modules = sorted(
    ".".join(("cdc_sync", *p.relative_to(library).with_suffix("").parts)).removesuffix(".__init__")
    for p in library.rglob("*.py")
)
unimportable = {}
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as error:  # reported, and the test fails on it
        unimportable[name] = f"{type(error).__name__}: {error}"
from_home = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None) and Path(module.__file__).resolve().is_relative_to(home)
)
# What each top-level name of the two folders would be without them on sys.path.
outside = [p for p in sys.path if p and not Path(p).resolve().is_relative_to(home)]
roots = {
    folder: sorted(
        p.stem if p.suffix == ".py" else p.name
        for p in (home / folder).iterdir()
        if not p.name.startswith(".") and p.name != "__pycache__" and (p.is_dir() or p.suffix == ".py")
    )
    for folder in ("dags", "plugins")
}
elsewhere = {
    name: str(getattr(spec, "origin", None) or list(spec.submodule_search_locations or []))
    for names in roots.values() for name in names
    if (spec := importlib.machinery.PathFinder.find_spec(name, outside)) is not None
}
print(json.dumps({
    "airflow": airflow.__version__,
    "python": sys.version.split()[0],
    "dags_folder": settings.DAGS_FOLDER,
    "plugins_folder": settings.PLUGINS_FOLDER,
    "plugin_seconds": plugin_seconds,
    "plugin_errors": {str(k): str(v) for k, v in plugin_errors.items()},
    "by_plugin_loader": by_plugin_loader,
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "stats": stats,
    "dag_ids": sorted(bag.dag_ids),
    "library": cdc_sync.config.__file__,
    "config_path": str(cdc_sync.config.default_config_path()),
    "schema": str(cdc_sync.config.SCHEMA_PATH),
    "sql_dir": str(cdc_sync.sql.sql_dir()),
    "from_home": from_home,
    "modules": len(modules),
    "unimportable": unimportable,
    "roots": roots,
    "elsewhere": elsewhere,
    "stdlib": sorted(set(n for ns in roots.values() for n in ns) & set(sys.stdlib_module_names)),
}))
"""


def _mwaa_home(package: Path, home: Path) -> None:
    """/usr/local/airflow as MWAA fills it: the bucket's dags/ synced, plugins.zip unzipped."""
    shutil.copytree(package / "dags", home / "dags")
    with zipfile.ZipFile(package / "plugins.zip") as archive:
        archive.extractall(home / "plugins")
    (home / "requirements").mkdir()
    shutil.copy2(package / "requirements.txt", home / "requirements" / "requirements.txt")


def _probe(home: Path, scratch: Path) -> dict:
    (scratch / "python").mkdir(exist_ok=True)  # MWAA's PYTHONPATH (/python): nothing of ours
    (scratch / "cwd").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(scratch),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(scratch / "python"),
    }
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", _PROBE, str(home)],
        capture_output=True,
        text=True,
        env=env,
        cwd=scratch / "cwd",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mwaa") / "build"
    mwaa_package.build(out, REPO / "config" / "pipelines.yaml")
    return out


def test_the_package_holds_exactly_what_mwaa_takes(package):
    assert sorted(p.name for p in package.iterdir()) == ["dags", "plugins.zip", "requirements.txt"]
    dags = {p.relative_to(package / "dags").as_posix() for p in (package / "dags").rglob("*") if p.is_file()}
    sql = {
        f"include/sql/{p.relative_to(REPO / 'include' / 'sql').as_posix()}"
        for p in (REPO / "include/sql").rglob("*.sql")
    }
    dag_files = {p.name for p in (REPO / "dags").glob("*.py")}
    assert dags == {".airflowignore", "config/pipelines.yaml", *dag_files, *sql}

    names = set(zipfile.ZipFile(package / "plugins.zip").namelist())
    library = {
        f"cdc_sync/{p.relative_to(REPO / 'plugins' / 'cdc_sync').as_posix()}"
        for p in (REPO / "plugins" / "cdc_sync").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert names == {".airflowignore", *library}
    assert "cdc_sync/schemas/pipelines.schema.json" in names

    lines = (package / "requirements.txt").read_text().splitlines()
    assert (
        lines[0]
        == '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-3.0.6/constraints-3.12.txt"'
    )
    listed = {line.split("#")[0].strip() for line in lines[1:] if line.split("#")[0].strip()}
    ours = {
        line.split("#")[0].strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    }
    preinstalled = {r for r in ours if r.split("[")[0].split(">")[0].split("=")[0] in mwaa_package.MWAA_PREINSTALLED}
    assert preinstalled, "requirements.txt names none of the providers MWAA installs: check MWAA_PREINSTALLED"
    assert listed == ours - preinstalled


def test_the_same_library_gives_the_same_plugins_zip(package, tmp_path):
    again = tmp_path / "plugins.zip"
    mwaa_package.write_plugins_zip(again)
    assert again.read_bytes() == (package / "plugins.zip").read_bytes()


def test_airflow_loads_plugins_and_parses_the_dags_in_an_mwaa_home(package, tmp_path):
    from cdc_sync.config import load_pipelines

    home = tmp_path / "usr-local-airflow"
    _mwaa_home(package, home)
    cold = _probe(home, tmp_path)  # first parse: compiles the library from the unzipped sources
    warm = _probe(home, tmp_path)  # later parses: bytecode cached next to the sources
    print(
        f"\nMWAA package on Airflow {warm['airflow']} (Python {warm['python']}, {AIRFLOW_PYTHON}): "
        f"plugin loader {warm['plugin_seconds']:.3f}s; "
        + "; ".join(
            f"{c['file']} parsed in {c['seconds']:.3f}s cold, {w['seconds']:.3f}s warm ({w['dags']} DAGs)"
            for c, w in zip(cold["stats"], warm["stats"], strict=True)
        )
    )
    report = warm
    assert Path(report["dags_folder"]) == home / "dags" and Path(report["plugins_folder"]) == home / "plugins"

    # zero import errors, from the plugin loader and from DAG parsing
    assert report["plugin_errors"] == {} and cold["plugin_errors"] == {}
    assert report["import_errors"] == {} and cold["import_errors"] == {}
    pipelines = load_pipelines(package / "dags" / "config" / "pipelines.yaml")
    expected = {p.dag_id for p in pipelines} | {p.reconcile_dag_id for p in pipelines if p.reconcile is not None}
    assert set(report["dag_ids"]) == expected

    # every module of the library imports, not only those parsing needs
    assert report["modules"] > 1 and report["unimportable"] == {}, report["unimportable"]

    # the library runs from the unzipped plugins and finds its files in the synced DAGs folder
    assert Path(report["library"]).is_relative_to(home / "plugins" / "cdc_sync")
    assert Path(report["config_path"]) == home / "dags" / "config" / "pipelines.yaml"
    assert Path(report["schema"]).is_file() and Path(report["schema"]).is_relative_to(home / "plugins")
    assert Path(report["sql_dir"]) == home / "dags" / "include" / "sql"

    # nothing of ours shadows a top-level module, and the plugin loader imports none of the library
    assert report["roots"]["plugins"] == ["cdc_sync"]
    assert report["elsewhere"] == {}, (
        f"names in the DAGs/plugins folders that are also modules elsewhere: {report['elsewhere']}"
    )
    assert report["stdlib"] == []
    library_names = {p.stem for p in (home / "plugins" / "cdc_sync").rglob("*.py")} | {"cdc_sync"}
    assert set(report["by_plugin_loader"]) & library_names == set()
    strays = [
        m for m in report["from_home"] if m != "cdc_sync" and not m.startswith("cdc_sync.") and "cdc_pipelines" not in m
    ]
    assert strays == [], f"modules loaded from the Airflow home outside the cdc_sync package: {strays}"

    # parse time under a second per file, as every parse after the first (which also compiles
    # the library; printed above) takes it
    for stat in warm["stats"]:
        assert stat["seconds"] < 1.0, f"{stat['file']} took {stat['seconds']:.2f}s to parse"


def _airflow(home: Path, scratch: Path, *args: str) -> str:
    """`airflow …` in the MWAA home (the environment of `_probe`); returns its stdout."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(scratch),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(scratch / "python"),
    }
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), "-m", "airflow", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=scratch / "cwd",
        timeout=300,
    )
    assert result.returncode == 0, f"airflow {' '.join(args)}: {result.stderr[-4000:]}"
    return result.stdout


def _json_output(text: str) -> list[dict]:
    """The JSON array an `airflow … -o json` command printed on one line (log lines come before it)."""
    return json.loads([line for line in text.splitlines() if line.startswith(("[]", "[{"))][-1])


def test_the_dag_processor_of_an_mwaa_home_parses_the_package(package, tmp_path):
    """What the docs tell you to check after an upload, on a metadata database of its own: the
    DAG processor parses every file once, `list-import-errors` is empty, both DAGs are listed."""
    from cdc_sync.config import load_pipelines

    home = tmp_path / "usr-local-airflow"
    _mwaa_home(package, home)
    for folder in ("python", "cwd"):
        (tmp_path / folder).mkdir()
    _airflow(home, tmp_path, "db", "migrate")
    _airflow(home, tmp_path, "dag-processor", "--num-runs", "1")

    assert _json_output(_airflow(home, tmp_path, "dags", "list-import-errors", "-o", "json")) == []
    pipelines = load_pipelines(package / "dags" / "config" / "pipelines.yaml")
    expected = {p.dag_id for p in pipelines} | {p.reconcile_dag_id for p in pipelines if p.reconcile is not None}
    listed = _json_output(_airflow(home, tmp_path, "dags", "list", "-o", "json"))
    assert {d["dag_id"] for d in listed} == expected
    assert {Path(d["fileloc"]).parent for d in listed} == {home / "dags"}
