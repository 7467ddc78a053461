"""docs/notebook.ipynb runs top to bottom in a real Jupyter kernel of this interpreter.

The kernel is ipykernel started with ``sys.executable`` (a kernel spec written
for the test, so no other Python installed on the machine is picked); the
model is planner's scripted server, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
NOTEBOOK = ROOT / "docs" / "notebook.ipynb"
KERNEL = "planner-test-python"


@pytest.fixture
def executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # jupyter_core warns (DeprecationWarning) unless the platformdirs layout is chosen.
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "planner test",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")  # the kernel's own warnings are not ours

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=90,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb


def outputs_of(nb: Any, marker: str) -> list[dict[str, Any]]:
    cells = [
        c
        for c in nb.cells
        if c.cell_type == "code" and any(line.startswith(marker) for line in c.source.splitlines())
    ]
    assert len(cells) == 1, marker
    return list(cells[0].outputs)


def html_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o["data"].get("text/html", "") for o in outputs if "data" in o)


def text_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def test_the_notebook_runs_and_shows_plans_progress_and_diffs(executed: Any) -> None:
    nb = executed
    assert nb.metadata.kernelspec.name == "python3"  # the file itself is not changed

    # The live display ended as the finished execution with its plan, in the one output.
    live = outputs_of(nb, "await display(planner")
    assert [o["output_type"] for o in live] == ["display_data"]
    shown = html_of(live)
    assert "planner-execution" in shown and "completed" in shown
    assert "Zero-downtime rotation of the payments database credentials" in shown
    assert "search_agents_by_capability" in shown  # the event log, in the details

    table = html_of(outputs_of(nb, "plan = await planner.wait"))
    assert "<table>" in table and "Revoke the old credentials" in table
    assert "prod-b" in table and "Long-lived connections" in table

    record = html_of(outputs_of(nb, "await planner.get(response.execution_id)"))
    assert "agno" in record and "claude-sonnet" in record

    mermaid = outputs_of(nb, "Markdown(f")[0]["data"]["text/markdown"]
    assert mermaid.startswith("```mermaid\nflowchart TD\n") and "t4 --> t5" in mermaid

    changes = html_of(outputs_of(nb, "refined_plan = await planner.wait"))
    assert "1 added, 0 removed, 0 changed" in changes
    assert "Roll back if the smoke tests fail" in changes
    printed = text_of(outputs_of(nb, "print(diff(plan, refined_plan))"))
    assert "+ 6. Roll back if the smoke tests fail (agent-devops)" in printed
    assert "+ The rollback needs the old role, so revoke it last" in printed

    # The sync facade worked inside the kernel's running loop.
    sync = outputs_of(nb, "with SyncPlanner(")
    assert "completed" in html_of(sync)
    assert text_of(sync).strip().endswith("3")
