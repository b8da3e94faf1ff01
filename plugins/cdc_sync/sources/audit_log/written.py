"""Which tables a statement writes, read with sqlglot's MySQL tokenizer and parser.

Writes are INSERT, UPDATE, DELETE, REPLACE, LOAD DATA, TRUNCATE and ALTER/DROP/RENAME
TABLE. A table without a schema belongs to the event's database. Only the written tables
count: ``INSERT … SELECT`` names the inserted table, a multi-table ``UPDATE … JOIN`` the
tables whose columns it sets, a multi-table ``DELETE`` the tables it deletes from. A
statement that writes but whose tables cannot be told for sure raises Unmapped with the
reason; nothing is guessed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.errors import SqlglotError
from sqlglot.tokens import Token, TokenType

log = logging.getLogger(__name__)

WRITE_KEYWORDS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD", "TRUNCATE", "ALTER", "DROP", "RENAME"})
_TOKENIZER = MySQL().tokenizer_class()
# sqlglot warns on statements it keeps as an opaque Command; those are reported by us instead.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


class Unmapped(ValueError):
    """A statement that writes, but whose written tables cannot be named for sure."""


@dataclass(frozen=True, order=True)
class TableRef:
    """A written table: schema and name, as the statement spells them (quotes removed)."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def first_keyword(statement: str) -> str | None:
    """The statement's first word, comments skipped (None for an empty or unreadable one)."""
    try:
        tokens = _TOKENIZER.tokenize(statement)
    except SqlglotError:
        return None
    for token in tokens:
        if token.token_type not in (TokenType.L_PAREN, TokenType.SEMICOLON):
            return token.text.upper()
    return None


def is_write(statement: str) -> bool:
    """Whether the statement's first keyword is one of the writes (WITH … is parsed to know)."""
    keyword = first_keyword(statement)
    if keyword == "WITH":
        return True
    return keyword in WRITE_KEYWORDS


def written_tables(statement: str, default_schema: str) -> tuple[TableRef, ...]:
    """The tables `statement` writes, sorted and distinct; () when it writes none.

    Raises Unmapped when it is a write whose tables cannot be named for sure. A statement
    that does not start like a write is answered without the SQL tokenizer; the others are
    remembered by their shape (literals left out), so the same statement with other values
    is not parsed again."""
    if not _MAY_WRITE.match(statement):
        return ()
    key = (statement_shape(statement), default_schema)
    known = _SHAPES.get(key)
    if known is None:
        try:
            known = find_written_tables(statement, default_schema)
        except Unmapped as exc:
            known = str(exc)
        if len(_SHAPES) >= _SHAPES_KEPT:
            _SHAPES.clear()
        _SHAPES[key] = known
    if isinstance(known, str):
        raise Unmapped(known)
    return known


def find_written_tables(statement: str, default_schema: str) -> tuple[TableRef, ...]:
    """written_tables without the shape cache: the single-table shortcut, else sqlglot."""
    fast = single_table_write(statement, default_schema)
    return fast if fast is not None else parsed_tables(statement, default_schema)


# What a write can start with (its keyword, or a comment or parenthesis before it); anything
# else (SELECT, SET, SHOW, CALL, COMMIT, …) writes no table.
_MAY_WRITE = re.compile(
    r"\s*(?:insert|update|delete|replace|load|truncate|alter|drop|rename|with|\(|/\*|--|#)", re.IGNORECASE
)
# Literals: quoted strings (with \\ escapes and doubled quotes) and numbers standing alone.
# The tables a statement writes are named by identifiers, never by literals.
_LITERAL = re.compile(r"'(?:[^'\\]++|\\.|'')*+'|(?<![\w$@.])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w$])", re.I | re.S)
_SHAPES: dict[tuple[str, str], tuple[TableRef, ...] | str] = {}
_SHAPES_KEPT = 4096


def statement_shape(statement: str) -> str:
    """The statement with its literals replaced by ``?``, when that is safe to do by text:
    with a backquote, a double quote or a comment in it, the statement itself."""
    if "`" in statement or '"' in statement or "#" in statement or "--" in statement or "/*" in statement:
        return statement
    return _LITERAL.sub("?", statement)


def parsed_tables(statement: str, default_schema: str) -> tuple[TableRef, ...]:
    """written_tables through sqlglot's parser alone (no single-table shortcut)."""
    try:
        tokens = _TOKENIZER.tokenize(statement)
    except SqlglotError as exc:
        if is_write_text(statement):
            raise Unmapped(f"statement does not tokenize as MySQL: {exc}") from exc
        return ()
    words = [t for t in tokens if t.token_type not in (TokenType.L_PAREN,)]
    if not words:
        return ()
    keyword = words[0].text.upper()
    if keyword not in WRITE_KEYWORDS and keyword != "WITH":
        return ()
    if keyword == "RENAME":
        # sqlglot keeps RENAME as a command: the rest of the text is tokenized on its own
        rest = _TOKENIZER.tokenize(statement[words[0].end + 1 :])
        return _sorted(_rename_tables(rest, default_schema))
    if keyword == "LOAD":
        return _sorted(_load_data_table(tokens, default_schema))
    text = _plain_modifiers(statement, words)
    try:
        expressions = sqlglot.parse(text, read="mysql")
    except SqlglotError as exc:
        raise Unmapped(f"statement does not parse as MySQL: {str(exc).splitlines()[0]}") from exc
    found: list[TableRef] = []
    for expression in expressions:
        if expression is not None:
            found.extend(_written_by(expression, default_schema))
    return _sorted(found)


_MODIFIERS = {
    "INSERT": frozenset({"LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY"}),
    "UPDATE": frozenset({"LOW_PRIORITY", "IGNORE"}),
    "DELETE": frozenset({"LOW_PRIORITY", "QUICK", "IGNORE"}),
}


def _plain_modifiers(statement: str, words: list[Token]) -> str:
    """The statement as sqlglot reads it: REPLACE spelled INSERT (same grammar), and the
    modifiers it does not know after INSERT/UPDATE/DELETE (LOW_PRIORITY, DELAYED,
    HIGH_PRIORITY, QUICK, IGNORE), which do not change the tables written, left out.
    Cut at token positions, so nothing inside a quoted name or string is touched."""
    first = words[0]
    keyword = first.text.upper()
    if keyword == "REPLACE":
        statement = statement[: first.start] + "INSERT" + statement[first.end + 1 :]
        words = [t for t in _TOKENIZER.tokenize(statement) if t.token_type != TokenType.L_PAREN]
        keyword = "INSERT"
    modifiers = _MODIFIERS.get(keyword, frozenset())
    cuts = []
    for token in words[1:4]:
        if token.token_type != TokenType.IDENTIFIER and token.text.upper() in modifiers:
            cuts.append((token.start, token.end + 1))
        else:
            break
    for start, end in reversed(cuts):
        statement = statement[:start] + statement[end:]
    return statement


_PLAIN_PREFIX_STOP = "('\""
_INSERT_NEXT = {"VALUES", "VALUE", "SELECT", "SET", "PARTITION", "TABLE", "WITH"}
_DELETE_NEXT = {"WHERE", "ORDER BY", "LIMIT", "PARTITION"}


def single_table_write(statement: str, default_schema: str) -> tuple[TableRef, ...] | None:
    """The common single-table INSERT/REPLACE/UPDATE/DELETE, from the tokens of the
    statement's head only (up to its first parenthesis or quote, when that head holds no
    comment or backquote): exact by the MySQL grammar, or None to let sqlglot's parser decide.

    ``INSERT [mods] [INTO] t {(|VALUES|SELECT|SET|…}``, ``UPDATE [mods] t [[AS] a] SET``,
    ``DELETE [mods] FROM t [[AS] a] {WHERE|ORDER|LIMIT|end}``."""
    cut = min((i for i in (statement.find(c) for c in _PLAIN_PREFIX_STOP) if i >= 0), default=len(statement))
    head = statement[:cut]
    if "`" in head or "/*" in head or "--" in head or "#" in head:
        return None
    try:
        tokens = _TOKENIZER.tokenize(head)
    except SqlglotError:
        return None
    words = [t.text.upper() for t in tokens]
    if not words:
        return None
    keyword, index = words[0], 1
    if keyword not in ("INSERT", "REPLACE", "UPDATE", "DELETE"):
        return None
    skip = _MODIFIERS["INSERT" if keyword == "REPLACE" else keyword] | ({"IGNORE"} if keyword == "INSERT" else set())
    while index < len(words) and words[index] in skip:
        index += 1
    if keyword in ("INSERT", "REPLACE") and index < len(words) and words[index] == "INTO":
        index += 1
    elif keyword == "DELETE":
        if index >= len(words) or words[index] != "FROM":
            return None
        index += 1
    names = [tokens[index].text] if index < len(words) and tokens[index].token_type == TokenType.VAR else []
    index += 1
    if names and index + 1 < len(words) and words[index] == ".":
        if tokens[index + 1].token_type != TokenType.VAR:
            return None
        names.append(tokens[index + 1].text)
        index += 2
    if not names:
        return None
    rest = words[index:]
    if keyword in ("INSERT", "REPLACE"):
        ok = (not rest and cut < len(statement) and statement[cut] == "(") or (bool(rest) and rest[0] in _INSERT_NEXT)
    else:
        if rest and rest[0] == "AS":
            rest = rest[1:]
        if rest and tokens[len(words) - len(rest)].token_type == TokenType.VAR:
            rest = rest[1:]  # an alias
        if keyword == "UPDATE":
            ok = bool(rest) and rest[0] == "SET"
        else:
            ok = (not rest and cut == len(statement)) or (bool(rest) and rest[0] in _DELETE_NEXT)
    if not ok:
        return None
    if len(names) == 1:
        if not default_schema:
            return None  # the parser path says why
        return (TableRef(default_schema, names[0]),)
    return (TableRef(names[0], names[1]),)


def is_write_text(statement: str) -> bool:
    """Best effort for text that does not tokenize: its first word."""
    word = statement.lstrip().split(None, 1)[:1]
    return bool(word) and word[0].upper() in WRITE_KEYWORDS


def _sorted(tables: list[TableRef]) -> tuple[TableRef, ...]:
    return tuple(sorted(set(tables)))


def _ref(table: exp.Expression, default_schema: str) -> TableRef:
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise Unmapped(f"written object {table.sql(dialect='mysql')!r} is not a plain table name")
    if table.args.get("catalog"):
        raise Unmapped(f"table name {table.sql(dialect='mysql')!r} has more than two parts")
    schema = table.db or default_schema
    if not schema:
        raise Unmapped(f"table {table.name!r} has no schema and the event names no database")
    return TableRef(schema, table.name)


def _tables_in(source: exp.Expression) -> list[exp.Table]:
    """A FROM-like clause: the table and those joined to it."""
    tables = [source] if isinstance(source, exp.Table) else []
    for join in source.args.get("joins") or []:
        tables.extend(_tables_in(join.this))
    return tables


def _written_by(expression: exp.Expr, default_schema: str) -> list[TableRef]:
    if isinstance(expression, exp.Insert):
        target = expression.this
        if isinstance(target, exp.Schema):
            target = target.this
        return [_ref(target, default_schema)]
    if isinstance(expression, exp.Update):
        return _update_targets(expression, default_schema)
    if isinstance(expression, exp.Delete):
        return _delete_targets(expression, default_schema)
    if isinstance(expression, exp.TruncateTable):
        if expression.args.get("is_database"):
            raise Unmapped("TRUNCATE DATABASE names no table")
        return [_ref(t, default_schema) for t in expression.expressions]
    if isinstance(expression, exp.Alter):
        if (expression.args.get("kind") or "").upper() != "TABLE":
            return []
        tables = [_ref(expression.this, default_schema)]
        for action in expression.args.get("actions") or []:
            if isinstance(action, exp.AlterRename):
                tables.append(_ref(action.this, expression.this.db or default_schema))
        return tables
    if isinstance(expression, exp.Drop):
        if (expression.args.get("kind") or "").upper() != "TABLE":
            return []
        targets = expression.args.get("tables") or [expression.this]
        return [_ref(t, default_schema) for t in targets]
    if isinstance(expression, exp.Command):
        raise Unmapped(f"{expression.name} statement not understood by the MySQL parser")
    return []


def _aliases(tables: list[exp.Table]) -> dict[str, exp.Table]:
    named: dict[str, exp.Table] = {}
    for table in tables:
        named[(table.alias or table.name).lower()] = table
    return named


def _update_targets(update: exp.Update, default_schema: str) -> list[TableRef]:
    tables = _tables_in(update.this)
    for extra in update.args.get("from_") or update.args.get("from") or []:
        tables.extend(_tables_in(extra))
    if len(tables) == 1:
        return [_ref(tables[0], default_schema)]
    if not tables:
        raise Unmapped("UPDATE of something that is not a table")
    named = _aliases(tables)
    written = []
    for assignment in update.expressions:
        column = assignment.this if isinstance(assignment, exp.EQ) else None
        if not isinstance(column, exp.Column) or not column.table:
            raise Unmapped("multi-table UPDATE sets a column without naming its table")
        qualifier = column.table.lower()
        if column.db:  # SET schema.table.column = …
            written.append(TableRef(column.db, column.table))
            continue
        if qualifier not in named:
            raise Unmapped(f"multi-table UPDATE sets {column.sql(dialect='mysql')}, a table it does not name")
        written.append(_ref(named[qualifier], default_schema))
    return written


def _delete_targets(delete: exp.Delete, default_schema: str) -> list[TableRef]:
    listed = delete.args.get("tables")
    sources = _tables_in(delete.this) if delete.this is not None else []
    for using in delete.args.get("using") or []:
        sources.extend(_tables_in(using))
    if not listed:
        if delete.args.get("using"):  # DELETE FROM t1, t2 USING …: the FROM list is written
            return [_ref(t, default_schema) for t in _tables_in(delete.this)]
        if len(sources) != 1:
            raise Unmapped("DELETE names no single table")
        return [_ref(sources[0], default_schema)]
    named = _aliases(sources)
    written = []
    for table in listed:
        key = table.name.lower()
        if not table.db and key in named:
            written.append(_ref(named[key], default_schema))
        else:
            written.append(_ref(table, default_schema))
    return written


def _name_at(tokens: list[Token], index: int, default_schema: str) -> tuple[TableRef, int]:
    """A [schema.]table name starting at tokens[index]; returns it and the next index."""
    parts = []
    while index < len(tokens):
        token = tokens[index]
        if token.token_type in (TokenType.COMMA, TokenType.SEMICOLON) or (
            token.token_type != TokenType.IDENTIFIER and token.text.upper() in {"TO", "FIELDS", "COLUMNS", "LINES"}
        ):
            break
        if token.token_type == TokenType.DOT:
            index += 1
            continue
        if token.token_type in (TokenType.IDENTIFIER, TokenType.VAR) or token.text.isidentifier():
            parts.append(token.text)
            index += 1
            if index < len(tokens) and tokens[index].token_type == TokenType.DOT:
                continue
            break
        raise Unmapped(f"{token.text!r} where a table name was expected")
    if len(parts) == 1 and default_schema:
        return TableRef(default_schema, parts[0]), index
    if len(parts) == 2:
        return TableRef(parts[0], parts[1]), index
    raise Unmapped("table name missing, with more than two parts, or without a schema")


def _rename_tables(tokens: list[Token], default_schema: str) -> list[TableRef]:
    """RENAME TABLE a TO b[, c TO d]: every old and new name is written."""
    if not tokens or tokens[0].text.upper() not in ("TABLE", "TABLES"):
        return []  # RENAME USER: no table written
    found = []
    index = 1
    while index < len(tokens):
        ref, index = _name_at(tokens, index, default_schema)
        found.append(ref)
        if index < len(tokens) and (tokens[index].text.upper() == "TO" or tokens[index].token_type == TokenType.COMMA):
            index += 1
            continue
        if index < len(tokens) and tokens[index].token_type != TokenType.SEMICOLON:
            raise Unmapped(f"unexpected {tokens[index].text!r} in RENAME TABLE")
        break
    if len(found) < 2 or len(found) % 2:
        raise Unmapped("RENAME TABLE without old and new names in pairs")
    return found


def _load_data_table(tokens: list[Token], default_schema: str) -> list[TableRef]:
    """LOAD DATA … INTO TABLE name (also LOAD DATA FROM S3 and LOAD XML)."""
    for index in range(len(tokens) - 1):
        if tokens[index].text.upper() == "INTO" and tokens[index + 1].text.upper() == "TABLE":
            ref, _ = _name_at(tokens, index + 2, default_schema)
            return [ref]
    raise Unmapped("LOAD without INTO TABLE")
