"""Options in plugin URLs: ``threadpool?max_workers=8&shutdown=cancel``.

Executors (and stores) are selected by a URL whose query carries options; the
same options may be given as keywords, which take precedence.  A plugin
declares its options once, as a mapping from name to a parser of the query
text, and :func:`parse_options` does the rest: percent-decoding, typed values,
and a clear :class:`ValueError` for an unknown option, a bad value or an
option given twice::

    from planner.urls import boolean, number, parse_options, split_query

    OPTIONS = {"shutdown_timeout": number, "recover": boolean}
    name, query = split_query("inprocess?shutdown_timeout=5")
    options = parse_options(query, OPTIONS, plugin="inprocess", keywords={"recover": None})
    assert options == {"shutdown_timeout": 5.0}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

__all__ = [
    "OptionParser",
    "boolean",
    "integer",
    "number",
    "one_of",
    "parse_options",
    "split_query",
    "text",
]

OptionParser = Callable[[str], Any]
"""Turns query text into an option value; raises :class:`ValueError` saying what it expects."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def boolean(value: str) -> bool:
    """Parse ``1/true/yes/on`` or ``0/false/no/off`` (any case).

    Raises:
        ValueError: anything else.
    """
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true or false")


def integer(value: str) -> int:
    """Parse a whole number.

    Raises:
        ValueError: not a whole number.
    """
    try:
        return int(value)
    except ValueError:
        raise ValueError("expected a whole number") from None


def number(value: str) -> float:
    """Parse a finite number (``5``, ``0.5``, ``1e-3``).

    Raises:
        ValueError: not a finite number.
    """
    try:
        result = float(value)
    except ValueError:
        raise ValueError("expected a number") from None
    if result != result or result in (float("inf"), float("-inf")):
        raise ValueError("expected a finite number")
    return result


def text(value: str) -> str:
    """Take the text as it is (percent-decoded); an empty value is an error.

    Raises:
        ValueError: the value is empty.
    """
    if not value:
        raise ValueError("expected a non-empty value")
    return value


def one_of(*choices: str) -> OptionParser:
    """Return a parser that accepts exactly one of ``choices``.

    Args:
        choices: the accepted values.
    """
    expected = ", ".join(repr(c) for c in choices)

    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {expected}")
        return value

    return parse


def split_query(url: str) -> tuple[str, str]:
    """Split ``name?query`` into ``(name, query)``; the query is ``""`` when there is none."""
    name, _, query = url.partition("?")
    return name, query


def parse_options(
    query: str,
    options: Mapping[str, OptionParser],
    *,
    plugin: str,
    keywords: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Parse a URL query into typed options, then lay the keyword options over them.

    Args:
        query: the part of the URL after ``?`` (percent-encoded; empty pairs are skipped).
        options: every option the plugin knows, each with its parser.
        plugin: how error messages name the plugin (``"threadpool"``).
        keywords: options given as keywords; a ``None`` value means not given, any
            other value wins over the URL's (keywords are not parsed: they are typed).

    Returns:
        The options that were given, by name (absent ones are left to the caller's defaults).

    Raises:
        ValueError: an unknown option, an option given twice, or a value its parser refuses;
            the message names the plugin, the option and the value.
    """
    known = ", ".join(sorted(options))
    parsed: dict[str, Any] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True):
        if key not in options:
            raise ValueError(f"unknown {plugin} option {key!r}; known: {known}")
        if key in parsed:
            raise ValueError(f"{plugin} option {key!r} is given twice in the URL")
        try:
            parsed[key] = options[key](raw)
        except ValueError as exc:
            raise ValueError(f"bad value for {plugin} option {key}: {raw!r} ({exc})") from None
    for key, value in (keywords or {}).items():
        if key not in options:
            raise ValueError(f"unknown {plugin} option {key!r}; known: {known}")
        if value is not None:
            parsed[key] = value
    return parsed
