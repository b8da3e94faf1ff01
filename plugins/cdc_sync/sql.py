"""SQL templates from include/sql/<target>/, rendered with identifiers checked and quoted.

Values always travel as query parameters; only identifiers are rendered into the text,
and only through the `ident` filter, which refuses anything that is not a plain name.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import jinja2

from cdc_sync.errors import BadInput

SQL_DIR_ENV = "CDC_SYNC_SQL_DIR"
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^local$")


class UnsafeIdentifier(BadInput):
    pass


def check_identifier(name: str, what: str = "identifier") -> str:
    if not isinstance(name, str) or not _PLAIN_NAME.match(name):
        raise UnsafeIdentifier(f"{what} {name!r} is not a plain name (letters, digits, underscores)")
    return name


def bigquery_ident(name: str) -> str:
    return f"`{check_identifier(name)}`"


def mysql_ident(name: str) -> str:
    return f"`{check_identifier(name)}`"


def mysql_string(value: str) -> str:
    """A quoted literal for file paths and S3 URIs we built ourselves."""
    if any(ch in value for ch in "'\\\x00\n\r") or not value.isprintable():
        raise UnsafeIdentifier(f"refusing to put {value!r} in SQL text")
    return f"'{value}'"


def bigquery_table(project: str, dataset: str, table: str) -> str:
    if not _PROJECT.match(project):
        raise UnsafeIdentifier(f"project {project!r} is not a Google Cloud project id")
    return f"`{project}.{check_identifier(dataset, 'dataset')}.{check_identifier(table, 'table')}`"


def sql_dir() -> Path:
    """CDC_SYNC_SQL_DIR, else include/sql of the repository (or of the MWAA dags folder)."""
    if env := os.environ.get(SQL_DIR_ENV):
        return Path(env)
    root = Path(__file__).resolve().parents[2]
    for candidate in (root / "include" / "sql", root / "dags" / "include" / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no include/sql folder under {root}; set {SQL_DIR_ENV}")


@cache
def _environment(directory: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["bq_ident"] = bigquery_ident
    env.filters["my_ident"] = mysql_ident
    env.filters["my_string"] = mysql_string
    env.globals["bq_table"] = bigquery_table
    return env


def render(template: str, **params) -> str:
    return _environment(str(sql_dir())).get_template(template).render(**params)
