"""The plugin registry, and a real third-party plugin distribution installed with pip.

``tests/plugin_dist`` is the example plugin the docs point to.  It is built and
installed for real (``pip install --target``) once per session; subprocesses
then import planner with that directory on ``PYTHONPATH``, so entry-point
discovery, ``PLANNER_PLUGINS`` and the ``planning_strategy`` enum are checked
exactly as a user's process sees them.  The in-process tests build their own
:class:`~planner.plugins.PluginRegistry` so they never depend on what else is
installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
import pytest
from dist_support import pip_install
from pydantic import ValidationError

import planner
from planner import (
    InvalidRequestError,
    MissingExtraError,
    Planner,
    PluginError,
    PluginRegistry,
    RunContext,
    Store,
    TaskPlan,
    TaskPlanRequest,
    UnknownPluginError,
    hookimpl,
)
from planner.backends.stores.memory import MemoryStore
from planner.models import SEED_STRATEGIES
from planner.plugins import PLUGINS_ENV
from planner.testing import FunctionStrategy, sample_plan, sample_request
from planner.testing.contracts import StoreContract

# Marked here, not only by conftest, so anyio uses the configured backend fixture.
pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parent.parent
PLUGIN_DIST = REPO / "tests" / "plugin_dist"
PLANNER_SOURCE_ROOT = Path(planner.__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT = 90.0


# -- the installed third-party distribution --------------------------------------------


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tests/plugin_dist`` built by hatchling and installed by pip into a fresh directory."""
    target = tmp_path_factory.mktemp("plugin_site")
    pip_install(PLUGIN_DIST, target, SUBPROCESS_TIMEOUT)
    return target


def run_python(code: str, *args: str, site: Path | None, plugins: str | None = None) -> Any:
    """Run ``code`` in a fresh interpreter and return the JSON it prints last.

    Args:
        code: the script; its last line of output must be JSON.
        args: its ``sys.argv[1:]``.
        site: a directory to put first on ``PYTHONPATH`` (the installed plugin), or None.
        plugins: the value of ``PLANNER_PLUGINS``, or None to leave it unset.
    """
    env = dict(os.environ)
    env.pop(PLUGINS_ENV, None)  # the caller's setting must not leak into the check
    if plugins is not None:
        env[PLUGINS_ENV] = plugins
    paths = [str(site)] if site is not None else []
    paths.append(str(PLANNER_SOURCE_ROOT))  # the planner under test, installed or not
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        cwd=site or PLANNER_SOURCE_ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


PROBE = """
    import json

    from pydantic import ValidationError

    from planner import TaskPlanRequest
    from planner.plugins import default_registry

    registry = default_registry()
    schema = TaskPlanRequest.model_json_schema()["properties"]["planning_strategy"]
    try:
        TaskPlanRequest(description="probe", planning_strategy="example_strategy")
        errors = None
    except ValidationError as exc:
        errors = [[list(e["loc"]), e["type"]] for e in exc.errors()]
    print(json.dumps({
        "plugins": [name for name, _ in registry.manager.list_name_plugin()],
        "strategy": registry.names("strategy"),
        "store": registry.names("store"),
        "executor": registry.names("executor"),
        "enum": next(s["enum"] for s in schema["anyOf"] if "enum" in s),
        "errors": errors,
    }))
"""


def test_pip_installs_the_entry_point(plugin_site: Path) -> None:
    entry_points = plugin_site / "planner_plugin_example-0.1.0.dist-info" / "entry_points.txt"
    lines = entry_points.read_text().split()
    assert lines[:4] == ["[planner]", "example", "=", "planner_plugin_example"]
    assert (plugin_site / "planner_plugin_example" / "__init__.py").is_file()


def test_installed_plugin_registers_its_strategy_and_store(plugin_site: Path) -> None:
    probe = run_python(PROBE, site=plugin_site)
    assert "example" in probe["plugins"]
    assert "example_strategy" in probe["strategy"]
    assert {"examplemem", "memory"} <= set(probe["store"])
    assert "inprocess" in probe["executor"]
    assert probe["errors"] is None  # the plugin's name is a valid planning_strategy


def test_not_installed_means_not_registered() -> None:
    probe = run_python(PROBE, site=None)
    assert "example" not in probe["plugins"]
    assert "example_strategy" not in probe["strategy"]
    assert "examplemem" not in probe["store"]
    assert probe["errors"] == [[["planning_strategy"], "literal_error"]]


@pytest.mark.parametrize(
    ("setting", "loaded"),
    [
        ("", False),
        ("example", True),
        (" other , example ", True),
        ("other", False),
    ],
)
def test_planner_plugins_env_selects_entry_points(
    plugin_site: Path, setting: str, loaded: bool
) -> None:
    probe = run_python(PROBE, site=plugin_site, plugins=setting)
    assert ("example" in probe["plugins"]) is loaded
    assert ("example_strategy" in probe["strategy"]) is loaded
    assert ("examplemem" in probe["store"]) is loaded
    # The built-ins load whatever the setting says.
    assert "memory" in probe["store"]
    assert "inprocess" in probe["executor"]
    if loaded:
        assert probe["errors"] is None
    else:
        assert probe["errors"] == [[["planning_strategy"], "literal_error"]]


def test_schema_enum_lists_installed_strategies(plugin_site: Path) -> None:
    installed = run_python(PROBE, site=plugin_site)
    assert installed["enum"][: len(SEED_STRATEGIES)] == list(SEED_STRATEGIES)
    assert "example_strategy" in installed["enum"]
    assert sorted(installed["enum"]) == sorted({*SEED_STRATEGIES, *installed["strategy"]})

    disabled = run_python(PROBE, site=plugin_site, plugins="")
    assert disabled["enum"] == ["claude_code_sdk", "agno"]


GENERATE = """
    import json
    import sys

    import anyio

    from planner import AgentInfo, PlanGenerationFailedError, Planner, TaskPlanRequest

    DESCRIPTION = sys.argv[1]


    async def main() -> None:
        agents = [
            AgentInfo(id="agent-ops", name="Ops Engineer", model_id="claude-sonnet-4-5"),
            AgentInfo(id="agent-dba", name="DBA", model_id="claude-haiku-4-5"),
        ]
        request = TaskPlanRequest(
            description=DESCRIPTION, agents=agents, planning_strategy="example_strategy"
        )
        no_agents = TaskPlanRequest(description="nobody", planning_strategy="example_strategy")
        async with Planner(
            store="examplemem://", executor="inprocess", store_options={"label": "from-test"}
        ) as planner:
            response = await planner.generate(request)
            plan = await planner.wait(response.execution_id, timeout=30)
            record = await planner.get(response.execution_id)
            events = await planner.events(response.execution_id)
            failed = await planner.generate(no_agents)
            try:
                await planner.wait(failed.execution_id, timeout=30)
                failure = None
            except PlanGenerationFailedError as exc:
                failure = [exc.error.type, exc.error.message]
            store = type(planner.store)
        print(plan.title)
        print(json.dumps({
            "title": plan.title,
            "status": record.status.value,
            "strategy": record.metadata.planning_strategy,
            "agent": plan.recommended_execution.entity_id,
            "task_agents": [t.agent_id for b in plan.team_breakdown for t in b.tasks],
            "store": f"{store.__module__}:{store.__qualname__}",
            "label": planner.store.label,
            "types": [e.type for e in events],
            "progress": [e.data for e in events if e.type == "progress"],
            "failure": failure,
        }))


    anyio.run(main)
"""


def test_generation_with_the_installed_plugin(plugin_site: Path) -> None:
    description = f"Rotate the API keys {uuid.uuid4().hex[:8]}"
    out = run_python(GENERATE, description, site=plugin_site, plugins="example")
    assert out["title"] == f"Example plan: {description}"
    assert out["status"] == "completed"
    assert out["strategy"] == "example_strategy"
    assert out["agent"] == "agent-ops"  # the request's first agent
    assert out["task_agents"] == ["agent-ops"]
    assert out["store"] == "planner_plugin_example:ExampleStore"
    assert out["label"] == "from-test"  # store_options reached factory(url, **options)
    assert out["progress"] == [{"stage": "planning", "message": "Assigning Ops Engineer"}]
    types = out["types"]
    assert types.index("progress") < types.index("complete") < types.index("done")
    assert types[-1] == "done"
    # The example's StrategyError is recorded as the failure, not raised into the caller.
    assert out["failure"] == ["StrategyError", "example_strategy needs at least one agent"]


# -- the registry, in process ------------------------------------------------------------


def _plan(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
    return sample_plan(request, tasks=1)


class LocalPlugin:
    """A plugin object, as a test or an application registers one at run time."""

    def __init__(self, strategy: str = "local_strategy") -> None:
        self.strategy = strategy

    @hookimpl
    def register_strategies(self, register: Any) -> None:
        register(
            self.strategy, lambda: FunctionStrategy(_plan, name=self.strategy), aliases=("loc",)
        )

    @hookimpl
    def register_stores(self, register: Any) -> None:
        register("localmem", lambda url, **options: MemoryStore("memory://"))


class MisspelledHook:
    """A plugin whose hook name matches no hookspec (``register_strategy``, singular)."""

    @hookimpl
    def register_strategy(self, register: Any) -> None:
        register("never", FunctionStrategy(_plan))


@pytest.fixture
def registry() -> PluginRegistry:
    """A registry with the built-ins only (no third-party entry points)."""
    return PluginRegistry(entry_points=False)


def test_builtins_come_through_the_hooks(registry: PluginRegistry) -> None:
    assert registry.registration("store", "memory://").plugin == "planner.backends.stores"
    assert registry.registration("executor", "inprocess").plugin == "planner.backends.executors"
    assert registry.manager.get_plugin("planner.strategies") is not None
    assert isinstance(registry.create("store", "memory://"), MemoryStore)


def test_unknown_store_url_lists_names_and_suggests(registry: PluginRegistry) -> None:
    with pytest.raises(UnknownPluginError) as info:
        registry.create("store", "memroy://")
    error = info.value
    assert isinstance(error, LookupError)
    assert isinstance(error, PluginError)
    assert (error.kind, error.name) == ("store", "memroy")
    assert error.available == registry.names("store")
    assert f"available: {', '.join(registry.names('store'))}" in str(error)
    assert str(error).endswith("Did you mean 'memory'?")

    with pytest.raises(UnknownPluginError, match="Did you mean 'memory'"):
        Planner(store="memroy://", registry=registry)


def test_unknown_executor_lists_names_and_suggests(registry: PluginRegistry) -> None:
    with pytest.raises(UnknownPluginError) as info:
        Planner(executor="inproces", registry=registry)
    assert isinstance(info.value, LookupError)
    assert info.value.kind == "executor"
    assert "inprocess" in info.value.available
    assert "Did you mean 'inprocess'?" in str(info.value)


def test_unknown_strategy_lists_names(registry: PluginRegistry) -> None:
    registry.register(LocalPlugin())
    with pytest.raises(UnknownPluginError) as info:
        registry.create("strategy", "local_stratgy")
    assert info.value.kind == "strategy"
    assert "local_strategy" in str(info.value)
    assert "Did you mean 'local_strategy'?" in str(info.value)

    with pytest.raises(UnknownPluginError) as far:
        Planner(registry=registry).strategy("zzzz")
    assert "local_strategy" in str(far.value)
    assert "Did you mean" not in str(far.value)


def test_register_a_plugin_object_at_run_time(registry: PluginRegistry) -> None:
    assert "local_strategy" not in registry.names("strategy")  # builds the cached table
    plugin = LocalPlugin()
    registry.register(plugin, name="local")
    assert {"local_strategy", "loc"} <= set(registry.names("strategy"))
    assert "localmem" in registry.names("store")
    assert registry.registration("strategy", "loc").plugin == "local"
    strategy = registry.create("strategy", "loc")
    assert isinstance(strategy, FunctionStrategy)
    assert strategy.name == "local_strategy"
    assert isinstance(registry.create("store", "localmem://x"), MemoryStore)


async def test_planner_accepts_the_strategies_of_its_registry(registry: PluginRegistry) -> None:
    # A strategy registered on the Planner's own registry is as runnable as an
    # installed one, so validating through that Planner must accept its name.
    registry.register(LocalPlugin("registry_only_strategy"))
    request = sample_request(planning_strategy=None).model_dump()
    request["planning_strategy"] = "registry_only_strategy"
    async with Planner(registry=registry) as p:
        assert "registry_only_strategy" in p.strategy_names
        response = await p.generate(request)
        plan = await p.wait(response.execution_id, timeout=30)
    assert plan.recommended_execution.entity_id == request["agents"][0]["id"]


def test_misspelled_hook_is_rejected(registry: PluginRegistry) -> None:
    bad = MisspelledHook()
    with pytest.raises(pluggy.PluginValidationError) as info:
        registry.register(bad)
    assert info.value.plugin is bad
    assert "register_strategy" in str(info.value)
    with pytest.raises(pluggy.PluginValidationError):
        PluginRegistry(entry_points=False, plugins=[MisspelledHook()])


def test_rejected_plugin_leaves_the_registry_usable(registry: PluginRegistry) -> None:
    bad = MisspelledHook()
    with pytest.raises(pluggy.PluginValidationError):
        registry.register(bad)
    assert not registry.manager.is_registered(bad)
    registry.register(LocalPlugin())  # the rejected plugin must not poison later ones
    assert "local_strategy" in registry.names("strategy")
    assert "never" not in registry.names("strategy")


# -- lazy "module:attr" factories ---------------------------------------------------------


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for throwaway plugin modules, removed from sys.modules after."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("planner_test_lazy_"):
            del sys.modules[name]


def _lazy_plugin(kind: str, name: str, factory: str, extra: str | None) -> object:
    class Lazy:
        @hookimpl
        def register_stores(self, register: Any) -> None:
            if kind == "store":
                register(name, factory, extra=extra)

        @hookimpl
        def register_executors(self, register: Any) -> None:
            if kind == "executor":
                register(name, factory, extra=extra)

    return Lazy()


def test_lazy_factory_imports_on_first_use(registry: PluginRegistry, module_dir: Path) -> None:
    module = f"planner_test_lazy_ok_{uuid.uuid4().hex[:8]}"
    (module_dir / f"{module}.py").write_text(
        "from planner.backends.stores.memory import MemoryStore\n\n\n"
        "def make(url, **options):\n"
        "    store = MemoryStore('memory://')\n"
        "    store.options = options\n"
        "    return store\n"
    )
    registry.register(_lazy_plugin("store", "lazy", f"{module}:make", "lazy"))
    assert "lazy" in registry.names("store")
    assert module not in sys.modules  # registering imported nothing
    store = registry.create("store", "lazy://db", color="blue")
    assert module in sys.modules
    assert isinstance(store, MemoryStore)
    assert store.options == {"color": "blue"}  # type: ignore[attr-defined]


def test_lazy_factory_missing_package_names_the_extra(
    registry: PluginRegistry, module_dir: Path
) -> None:
    module = f"planner_test_lazy_needs_{uuid.uuid4().hex[:8]}"
    missing = f"planner_test_not_installed_{uuid.uuid4().hex[:8]}"
    (module_dir / f"{module}.py").write_text(f"import {missing}\n\n\nclass Store: ...\n")
    registry.register(_lazy_plugin("store", "fancy", f"{module}:Store", "fancy"))
    assert "fancy" in registry.names("store")

    with pytest.raises(MissingExtraError) as info:
        registry.create("store", "fancy://somewhere")
    error = info.value
    assert isinstance(error, ImportError)
    assert isinstance(error, PluginError)
    assert error.extra == "fancy"
    assert error.name == missing
    assert 'pip install "planner[fancy]"' in str(error)
    assert "the store 'fancy'" in str(error)
    assert isinstance(error.__cause__, ModuleNotFoundError)

    with pytest.raises(MissingExtraError, match=r'pip install "planner\[fancy\]"'):
        Planner(store="fancy://somewhere", registry=registry)


def test_lazy_factory_without_extra_raises_the_import_error(
    registry: PluginRegistry, module_dir: Path
) -> None:
    module = f"planner_test_lazy_noextra_{uuid.uuid4().hex[:8]}"
    missing = f"planner_test_not_installed_{uuid.uuid4().hex[:8]}"
    (module_dir / f"{module}.py").write_text(f"import {missing}\n")
    registry.register(_lazy_plugin("executor", "plain", f"{module}:Executor", None))
    with pytest.raises(ModuleNotFoundError) as info:
        registry.create("executor", "plain")
    assert not isinstance(info.value, MissingExtraError)  # no extra to name
    assert info.value.name == missing


def test_lazy_factory_whose_own_module_is_missing_is_not_an_extra(
    registry: PluginRegistry, module_dir: Path
) -> None:
    # A typo in the plugin's own "module:attr" is the plugin's bug, not a missing extra.
    module = f"planner_test_lazy_absent_{uuid.uuid4().hex[:8]}"
    registry.register(_lazy_plugin("store", "typo", f"{module}.backend:Store", "typo"))
    with pytest.raises(ModuleNotFoundError) as info:
        registry.create("store", "typo://")
    assert not isinstance(info.value, MissingExtraError)
    assert info.value.name == module


# -- Planner-local strategies and planning_strategy -----------------------------------------


async def test_planner_local_strategy_name_is_valid_through_the_planner() -> None:
    data = sample_request(planning_strategy=None).model_dump()
    data["planning_strategy"] = "mine"

    # The documented rule: a bare TaskPlanRequest knows only the seed's and the
    # installed plugins' names ...
    with pytest.raises(ValidationError) as info:
        TaskPlanRequest(**data)
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [
        (("planning_strategy",), "literal_error")
    ]
    # ... a validation context, or the Planner that owns the strategy, adds its names.
    assert TaskPlanRequest.model_validate(data, context={"strategies": {"mine"}}).planning_strategy
    calls: list[str] = []

    def mine(request: TaskPlanRequest, ctx: RunContext) -> TaskPlan:
        calls.append(request.description)
        return sample_plan(request, tasks=1, title="mine")

    async with Planner(strategies={"mine": FunctionStrategy(mine)}) as p:
        assert p.validate(data).planning_strategy == "mine"
        response = await p.generate(data)
        plan = await p.wait(response.execution_id, timeout=30)
        record = await p.get(response.execution_id)

        other = Planner(strategies={"theirs": FunctionStrategy(mine)})
        with pytest.raises(InvalidRequestError) as invalid:
            other.validate(data)  # another Planner's strategy is not this one's
        assert invalid.value.errors[0]["type"] == "literal_error"
    assert plan.title == "mine"
    assert record.metadata.planning_strategy == "mine"
    assert calls == [data["description"]]


def test_local_strategy_name_is_not_in_the_global_enum() -> None:
    Planner(strategies={"mine_only_here": FunctionStrategy(_plan)})
    schema = TaskPlanRequest.model_json_schema()["properties"]["planning_strategy"]
    enum = next(s["enum"] for s in schema["anyOf"] if "enum" in s)
    assert "mine_only_here" not in enum
    assert enum[: len(SEED_STRATEGIES)] == list(SEED_STRATEGIES)


# -- the example plugin in process, and the docs that quote it ---------------------------


@pytest.fixture(scope="module")
def example_module() -> ModuleType:
    """The example plugin's module, loaded from its source without installing it."""
    path = PLUGIN_DIST / "planner_plugin_example" / "__init__.py"
    spec = importlib.util.spec_from_file_location("planner_plugin_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestExampleStoreContract(StoreContract):
    @pytest.fixture
    async def store(self, example_module: ModuleType) -> AsyncIterator[Store]:
        async with example_module.ExampleStore("examplemem://contract") as store:
            yield store


def test_example_plugin_without_installing_it(example_module: ModuleType) -> None:
    registry = PluginRegistry(entry_points=False, plugins=[example_module])
    assert "example_strategy" in registry.names("strategy")
    store = registry.create("store", "examplemem://here", label="in-process")
    assert isinstance(store, example_module.ExampleStore)
    assert (store.url, store.label) == ("examplemem://here", "in-process")
    with pytest.raises(ValueError, match="not an examplemem URL"):
        example_module.ExampleStore("memory://")


def test_run_time_registration_replaces_a_builtin(registry: PluginRegistry) -> None:
    replacement = MemoryStore("memory://replacement")

    class Replace:
        @hookimpl
        def register_stores(self, register: Any) -> None:
            register("memory", lambda url, **options: replacement)

    assert registry.create("store", "memory://") is not replacement
    registry.register(Replace(), name="replace")
    assert registry.create("store", "memory://") is replacement
    assert registry.registration("store", "memory").plugin == "replace"


_QUOTE = re.compile(
    r"<!-- not-run: quoted from (?P<path>\S+) -->\n```\w+\n(?P<code>.*?)```", re.DOTALL
)


def test_docs_quote_the_real_files() -> None:
    docs = (REPO / "docs" / "plugins.md").read_text()
    quotes = list(_QUOTE.finditer(docs))
    assert len(quotes) >= 5
    for quote in quotes:
        source = (REPO / quote["path"]).read_text()
        assert quote["code"] in source, f"docs/plugins.md quotes {quote['path']} wrongly"
