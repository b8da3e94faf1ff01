"""Filter criteria as a Lambda event source mapping takes them, evaluated as Lambda does.

`{"Filters": [{"Pattern": "<JSON>"}, ...]}`: a record passes when any one pattern matches
(OR across filters). A pattern is an object whose keys follow the record's keys; a leaf is a
list of matchers, any one of which may match (OR). Every key of a pattern must match (AND).

Matchers (AWS Lambda "Filter rule syntax", the EventBridge pattern language):
  "text", 12, true, null          equals (a number equals a JSON number numerically)
  {"prefix": "abc"}               a string that starts with abc
  {"exists": true} / false        the key is there / is not there (leaf keys only: for a
                                  DynamoDB attribute, the type key, e.g. `{"S": [{"exists": true}]}`)
  {"numeric": [">", 0, "<=", 5]}  a JSON number in the range (one or two comparisons)
  {"anything-but": [..]}          anything but these values (or {"anything-but": {"prefix": ..}})
A record field that is a list matches when any of its elements matches.

AWS documents that DynamoDB event source mappings filter on the `dynamodb` key; `eventName`
(INSERT/MODIFY/REMOVE) is accepted too and is what the usual "only inserts" pattern uses.
DynamoDB numbers arrive as strings (`{"N": "5"}`), so `numeric` matchers never match them,
as in Lambda: match `N` values with equals or prefix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from cdc_sync.errors import SetupError

_MISSING = object()
_NUMERIC_OPS = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class FilterError(SetupError, ValueError):
    """Filter criteria that Lambda would refuse; the message names the filter and what is wrong."""


@dataclass(frozen=True)
class FilterCriteria:
    """Parsed `{"Filters": [{"Pattern": ...}]}`; an empty list lets every record through."""

    patterns: tuple[dict, ...] = ()

    @classmethod
    def parse(cls, criteria: dict | str | None) -> FilterCriteria:
        """Read filter criteria as written for a Lambda event source mapping (dict or JSON text)."""
        if criteria is None:
            return cls()
        if isinstance(criteria, str):
            criteria = _json(criteria, "filter criteria")
        if not isinstance(criteria, dict) or set(criteria) - {"Filters"}:
            raise FilterError('filter criteria: expected {"Filters": [{"Pattern": "..."}]}')
        filters = criteria.get("Filters", [])
        if not isinstance(filters, list):
            raise FilterError("filter criteria: Filters must be a list")
        patterns = []
        for index, entry in enumerate(filters):
            if not isinstance(entry, dict) or set(entry) != {"Pattern"}:
                raise FilterError(f'filter criteria: Filters[{index}] must be {{"Pattern": "<JSON text>"}}')
            pattern = entry["Pattern"]
            pattern = _json(pattern, f"Filters[{index}].Pattern") if isinstance(pattern, str) else pattern
            _check_pattern(pattern, f"Filters[{index}].Pattern")
            patterns.append(pattern)
        return cls(tuple(patterns))

    def matches(self, record: dict) -> bool:
        """True when the record passes (no filters, or any one pattern matches)."""
        return not self.patterns or any(_match_object(p, record) for p in self.patterns)


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise FilterError(f"filter criteria: {where} is not valid JSON: {error}") from error


def _check_pattern(pattern: Any, where: str) -> None:
    if not isinstance(pattern, dict) or not pattern:
        raise FilterError(f"filter criteria: {where} must be a non-empty JSON object")
    for key, value in pattern.items():
        here = f"{where}.{key}"
        if isinstance(value, dict):
            _check_pattern(value, here)
        elif isinstance(value, list):
            if not value:
                raise FilterError(f"filter criteria: {here}: an empty list matches nothing")
            for matcher in value:
                _check_matcher(matcher, here)
        else:
            raise FilterError(f"filter criteria: {here}: a leaf must be a list of matchers, not {value!r}")


def _check_matcher(matcher: Any, where: str) -> None:
    if matcher is None or isinstance(matcher, (str, bool, int, float)):
        return
    if not isinstance(matcher, dict) or len(matcher) != 1:
        raise FilterError(f"filter criteria: {where}: {matcher!r} is not a matcher")
    ((name, argument),) = matcher.items()
    if name == "prefix" and isinstance(argument, str):
        return
    if name == "exists" and isinstance(argument, bool):
        return
    if name == "numeric":
        if not isinstance(argument, list) or len(argument) not in (2, 4):
            raise FilterError(f"filter criteria: {where}: numeric takes one or two [operator, number] pairs")
        for op, number in zip(argument[::2], argument[1::2], strict=True):
            if op not in _NUMERIC_OPS or isinstance(number, bool) or not isinstance(number, (int, float)):
                raise FilterError(f"filter criteria: {where}: numeric {op!r} {number!r} is not a comparison")
        return
    if name == "anything-but":
        values = argument if isinstance(argument, list) else [argument]
        if isinstance(argument, dict) and set(argument) == {"prefix"} and isinstance(argument["prefix"], str):
            return
        if all(v is None or isinstance(v, (str, int, float)) for v in values):
            return
    raise FilterError(f"filter criteria: {where}: {matcher!r} is not a matcher Lambda knows")


def _match_object(pattern: dict, value: Any) -> bool:
    for key, sub in pattern.items():
        found = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if isinstance(sub, dict):
            if not _match_object(sub, {} if found is _MISSING else found):  # absent: only exists false
                return False
        elif not any(_match_leaf(m, found) for m in sub):
            return False
    return True


def _match_leaf(matcher: Any, found: Any) -> bool:
    if isinstance(matcher, dict) and "exists" in matcher:
        return (found is not _MISSING) == matcher["exists"]
    if found is _MISSING:
        return False
    if isinstance(found, list):
        return any(_match_value(matcher, item) for item in found)
    return _match_value(matcher, found)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _equals(expected: Any, value: Any) -> bool:
    if _is_number(expected) and _is_number(value):
        return expected == value
    return type(expected) is type(value) and expected == value


def _match_value(matcher: Any, value: Any) -> bool:
    if not isinstance(matcher, dict):
        return _equals(matcher, value)
    ((name, argument),) = matcher.items()
    if name == "prefix":
        return isinstance(value, str) and value.startswith(argument)
    if name == "numeric":
        return _is_number(value) and all(
            _NUMERIC_OPS[op](value, number) for op, number in zip(argument[::2], argument[1::2], strict=True)
        )
    if name == "anything-but":
        if isinstance(argument, dict):
            return isinstance(value, str) and not value.startswith(argument["prefix"])
        values = argument if isinstance(argument, list) else [argument]
        return not any(_equals(v, value) for v in values)
    return False
