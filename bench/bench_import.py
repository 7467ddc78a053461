"""How much ``import planner`` costs, and whether it pulls in any optional package.

Runs fresh interpreters N times each:

- ``python -X importtime -c "import planner"``: the cumulative import time of the
  top-level ``planner`` line (what the import itself costs, start-up excluded);
- ``python -c "import planner"`` and ``python -c pass``: wall time of the whole
  process, so the difference is what a service pays at start-up for the import.

It prints medians, the heaviest modules the import brings in, the third-party
packages it loads, and any module of an optional dependency (there should be none).

Usage::

    python bench/bench_import.py            # 15 runs of each
    python bench/bench_import.py --n 31 --module planner.testing
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

OPTIONAL_PACKAGES: tuple[str, ...] = (
    "anthropic",
    "agno",
    "claude_agent_sdk",
    "temporalio",
    "psycopg",
    "psycopg_pool",
    "starlette",
    "uvicorn",
    "httpx",
    "yaml",
    "pytest",
)
"""Top-level packages of optional extras and test tools: ``import planner`` must load none."""

_TIMEOUT = 120.0


@dataclass(frozen=True)
class ImportLine:
    """One line of ``-X importtime`` output.

    Attributes:
        name: the module's dotted name.
        self_us: time spent in the module itself, in microseconds.
        cumulative_us: time including the modules it imported.
        depth: nesting level (0 for a module imported by the ``-c`` code or by ``site``).
    """

    name: str
    self_us: int
    cumulative_us: int
    depth: int


def parse_importtime(stderr: str) -> list[ImportLine]:
    """Parse the ``import time:`` lines that ``python -X importtime`` writes to stderr.

    Args:
        stderr: the interpreter's standard error.

    Returns:
        One entry per imported module, in the order the interpreter reported them
        (a module after the modules it imported).
    """
    lines: list[ImportLine] = []
    for raw in stderr.splitlines():
        if not raw.startswith("import time:"):
            continue
        parts = raw[len("import time:") :].split("|")
        if len(parts) != 3:
            continue
        self_text, cumulative_text, name_text = parts
        try:
            self_us, cumulative_us = int(self_text), int(cumulative_text)
        except ValueError:  # the header line: "self [us] | cumulative | imported package"
            continue
        name = name_text.strip()
        # The name column is indented by two spaces per nesting level, after one separator.
        depth = (len(name_text) - len(name_text.lstrip(" ")) - 1) // 2
        lines.append(ImportLine(name, self_us, cumulative_us, depth))
    return lines


def optional_modules(
    names: set[str] | list[str], packages: tuple[str, ...] = OPTIONAL_PACKAGES
) -> list[str]:
    """Return the module names that belong to one of ``packages`` (top-level name match)."""
    wanted = set(packages)
    return sorted(n for n in names if n.split(".", 1)[0] in wanted)


def run_importtime(code: str) -> list[ImportLine]:
    """Run ``python -X importtime -c code`` in a fresh interpreter and parse its report.

    Raises:
        RuntimeError: the interpreter failed.
    """
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        env=_clean_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"python -c {code!r} failed ({proc.returncode}):\n{proc.stderr}")
    return parse_importtime(proc.stderr)


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    # Our own measurement must not be skewed or polluted by a parent's settings.
    for key in ("PYTHONPROFILEIMPORTTIME", "PYTHONSTARTUP", "PYTHONINSPECT"):
        env.pop(key, None)
    return env


def wall_time_ms(code: str) -> float:
    """Return the wall time, in ms, of ``python -c code`` in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=_TIMEOUT, env=_clean_env())
    return (time.perf_counter() - start) * 1000


def _third_party(names: set[str]) -> list[str]:
    stdlib = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    tops = {n.split(".", 1)[0] for n in names}
    # importtime also lists imports that failed (``copy`` tries ``org.python.core``).
    return sorted(
        t
        for t in tops
        if t not in stdlib
        and not t.startswith("_")
        and t != "planner"
        and importlib.util.find_spec(t) is not None
    )


def _stdlib_top_level(names: set[str]) -> list[str]:
    tops = {n.split(".", 1)[0] for n in names}
    return sorted(t for t in tops if t in sys.stdlib_module_names and not t.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    """Measure and print; return 1 if an optional package was imported."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=15, help="fresh interpreters per measurement")
    parser.add_argument("--module", default="planner", help="the module to import")
    parser.add_argument("--top", type=int, default=12, help="how many heavy modules to list")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    code = f"import {args.module}"

    # One throw-away run of each, so that byte-code caches exist before we time anything.
    baseline_names = {line.name for line in run_importtime("pass")}
    run_importtime(code)
    wall_time_ms("pass")

    cumulative: list[int] = []
    reports: list[list[ImportLine]] = []
    for _ in range(args.n):
        lines = run_importtime(code)
        top = [line for line in lines if line.name == args.module and line.depth == 0]
        if not top:
            raise RuntimeError(f"no top-level {args.module!r} line in the importtime report")
        cumulative.append(top[-1].cumulative_us)
        reports.append(lines)
    import_wall = [wall_time_ms(code) for _ in range(args.n)]
    bare_wall = [wall_time_ms("pass") for _ in range(args.n)]

    # The heaviest modules by self time, median over the runs.
    self_times: dict[str, list[int]] = {}
    for lines in reports:
        for line in lines:
            if line.name not in baseline_names:
                self_times.setdefault(line.name, []).append(line.self_us)
    heavy = sorted(((statistics.median(v), k) for k, v in self_times.items()), reverse=True)[
        : args.top
    ]
    new_names = set(self_times)
    optional = optional_modules(new_names)
    third_party = _third_party(new_names)
    stdlib_new = _stdlib_top_level(new_names)

    med_cum = statistics.median(cumulative)
    med_import = statistics.median(import_wall)
    med_bare = statistics.median(bare_wall)
    print(f"python {sys.version.split()[0]} ({sysconfig.get_platform()}), {args.n} runs each\n")
    print(f"{'measurement':<44} {'median':>10} {'min':>10} {'max':>10}")
    print("-" * 77)
    print(
        f"{f'{code} (-X importtime cumulative)':<44} {med_cum / 1000:>8.1f}ms"
        f" {min(cumulative) / 1000:>8.1f}ms {max(cumulative) / 1000:>8.1f}ms"
    )
    print(
        f"{f'python -c {code!r} (wall)':<44} {med_import:>8.1f}ms"
        f" {min(import_wall):>8.1f}ms {max(import_wall):>8.1f}ms"
    )
    print(
        f"{'python -c pass (wall)':<44} {med_bare:>8.1f}ms"
        f" {min(bare_wall):>8.1f}ms {max(bare_wall):>8.1f}ms"
    )
    print(f"{'difference (wall)':<44} {med_import - med_bare:>8.1f}ms")
    print(f"\nmodules loaded by the import: {len(new_names)}")
    print(f"third-party packages: {', '.join(third_party) or 'none'}")
    print(f"new stdlib top-level modules: {', '.join(stdlib_new) or 'none'}")
    print("\nheaviest modules (self time, median):")
    for us, name in heavy:
        print(f"  {us / 1000:>7.2f} ms  {name}")
    verdict = "none" if not optional else ", ".join(optional)
    print(f"\noptional-dependency modules imported: {verdict}")

    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "python": sys.version.split()[0],
                    "module": args.module,
                    "runs": args.n,
                    "importtime_cumulative_ms_median": med_cum / 1000,
                    "wall_import_ms_median": med_import,
                    "wall_bare_ms_median": med_bare,
                    "modules_loaded": len(new_names),
                    "third_party": third_party,
                    "optional_imported": optional,
                    "heaviest": [{"module": n, "self_ms": us / 1000} for us, n in heavy],
                },
                indent=2,
            )
            + "\n"
        )
    return 1 if optional else 0


if __name__ == "__main__":
    sys.exit(main())
