"""Installing a plugin distribution for real, offline, into a directory of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def pip_install(source: Path, target: Path, timeout: float = 100.0) -> None:
    """``pip install --target`` the distribution at ``source``, with no index and no deps."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",  # hatchling is installed here: no download needed
        "--no-index",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--target",
        str(target),
        str(source),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
