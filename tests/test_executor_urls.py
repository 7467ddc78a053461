"""Executor URL options: the shared parser (planner.urls) and the three executors that use it."""

from __future__ import annotations

import re

import pytest

from planner import Planner
from planner.backends.executors.inprocess import InProcessExecutor
from planner.backends.executors.temporal import TemporalExecutor, parse_url
from planner.backends.executors.threadpool import ThreadPoolExecutor
from planner.urls import boolean, integer, number, one_of, parse_options, split_query, text

OPTIONS = {
    "count": integer,
    "seconds": number,
    "flag": boolean,
    "mode": one_of("fast", "slow"),
    "name": text,
}


def test_typed_values_from_the_query() -> None:
    options = parse_options(
        "count=3&seconds=0.5&flag=Yes&mode=slow&name=a%2Fb", OPTIONS, plugin="demo"
    )
    assert options == {"count": 3, "seconds": 0.5, "flag": True, "mode": "slow", "name": "a/b"}
    assert parse_options("", OPTIONS, plugin="demo") == {}
    assert parse_options("&&count=1&", OPTIONS, plugin="demo") == {"count": 1}


def test_keywords_win_and_none_means_not_given() -> None:
    options = parse_options(
        "count=3&flag=off", OPTIONS, plugin="demo", keywords={"count": 7, "flag": None}
    )
    assert options == {"count": 7, "flag": False}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("cuont=3", "unknown demo option 'cuont'; known: count, flag, mode, name, seconds"),
        ("count=many", "bad value for demo option count: 'many' (expected a whole number)"),
        ("count=", "bad value for demo option count: ''"),
        ("seconds=soon", "bad value for demo option seconds: 'soon' (expected a number)"),
        ("seconds=nan", "expected a finite number"),
        ("flag=maybe", "bad value for demo option flag: 'maybe' (expected true or false)"),
        ("mode=medium", "expected one of 'fast', 'slow'"),
        ("name=", "expected a non-empty value"),
        ("count=1&count=2", "demo option 'count' is given twice"),
    ],
)
def test_clear_errors(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_options(query, OPTIONS, plugin="demo")


def test_an_unknown_keyword_is_an_error_too() -> None:
    with pytest.raises(ValueError, match="unknown demo option 'colour'"):
        parse_options("", OPTIONS, plugin="demo", keywords={"colour": "red"})


def test_split_query() -> None:
    assert split_query("threadpool?max_workers=2") == ("threadpool", "max_workers=2")
    assert split_query("inprocess") == ("inprocess", "")


# -- the in-process executor (it used to ignore its URL's options) ---------------------------


def test_inprocess_reads_its_url_options() -> None:
    planner = Planner(executor="inprocess?shutdown_timeout=1&recover=false")
    executor = planner.executor
    assert isinstance(executor, InProcessExecutor)
    assert (executor.shutdown_timeout, executor.recover) == (1.0, False)
    defaults = InProcessExecutor()
    assert (defaults.shutdown_timeout, defaults.recover) == (10.0, True)
    assert (
        InProcessExecutor("inprocess?shutdown_timeout=1", shutdown_timeout=3).shutdown_timeout == 3
    )
    with pytest.raises(ValueError, match="unknown inprocess option 'timeout'"):
        InProcessExecutor("inprocess?timeout=1")
    with pytest.raises(ValueError, match="bad value for inprocess option recover"):
        InProcessExecutor("inprocess?recover=perhaps")
    with pytest.raises(ValueError, match="shutdown_timeout must not be negative"):
        InProcessExecutor("inprocess?shutdown_timeout=-1")
    with pytest.raises(ValueError, match="not an in-process executor URL"):
        InProcessExecutor("threadpool?max_workers=1")


def test_threadpool_and_temporal_share_the_parser() -> None:
    with pytest.raises(ValueError, match="bad value for threadpool option shutdown: 'later'"):
        ThreadPoolExecutor("threadpool?shutdown=later")
    with pytest.raises(ValueError, match="threadpool option 'max_workers' is given twice"):
        ThreadPoolExecutor("threadpool?max_workers=1&max_workers=2")
    # A Temporal boolean used to read anything but true/yes/on/1 as false.
    with pytest.raises(ValueError, match="bad value for Temporal executor option worker"):
        TemporalExecutor("temporal://h:1/ns?worker=maybe")
    assert parse_url("temporal://h:1/ns?task_queue=a%20b&max_attempts=4") == (
        "h:1",
        "ns",
        "a b",
        {"max_attempts": 4},
    )
    assert TemporalExecutor("temporal?task_queue=q").task_queue == "q"
