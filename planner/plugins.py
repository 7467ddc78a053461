"""The plugin registry: stores, executors and strategies by name.

Plugins are found through the entry-point group ``planner`` and registered
with pluggy; the built-ins are entry points of this distribution and go
through the same hooks.  ``PLANNER_PLUGINS`` limits which third-party entry
points load: unset loads all, a comma-separated list of entry-point names loads
those, an empty value loads none (the built-ins always load).

A factory is a callable or a ``"module:attribute"`` string imported on first
use, so registering a plugin imports none of its heavy packages; a missing
package then raises :class:`~planner.errors.MissingExtraError` naming the
``pip install`` to run.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast

import pluggy

from planner import hookspecs
from planner.errors import MissingExtraError, UnknownPluginError

__all__ = ["PLUGINS_ENV", "Kind", "PluginRegistry", "Registration", "default_registry"]

PLUGINS_ENV = "PLANNER_PLUGINS"
"""The environment variable that limits which third-party entry points load."""

Kind = Literal["store", "executor", "strategy"]

_BUILTIN_DIST = "planner"
_BUILTIN_MODULES = ("planner.backends.stores", "planner.backends.executors", "planner.strategies")
_HOOKS: dict[Kind, str] = {
    "store": "register_stores",
    "executor": "register_executors",
    "strategy": "register_strategies",
}


@dataclass(frozen=True)
class Registration:
    """One registered plugin object.

    Attributes:
        kind, name: what it is and what it is called.
        factory: a callable, or ``"module:attribute"`` imported on first use.
        extra: the ``planner[extra]`` that installs its packages, for the error message.
        plugin: the name of the plugin that registered it.
    """

    kind: Kind
    name: str
    factory: Callable[..., Any] | str
    extra: str | None = None
    plugin: str | None = None

    def load(self) -> Callable[..., Any]:
        """Return the factory, importing it if it was given as a string.

        Raises:
            MissingExtraError: a package the plugin needs is not installed.
        """
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if (
                self.extra is None
                or module_name == missing
                or module_name.startswith(missing + ".")
            ):
                raise
            raise MissingExtraError(
                f"the {self.kind} {self.name!r}", self.extra, exc.name or "?"
            ) from exc
        return cast(Callable[..., Any], getattr(module, attr))


def _scheme(name_or_url: str) -> str:
    if "://" in name_or_url:
        return name_or_url.split("://", 1)[0]
    return name_or_url.split("?", 1)[0]


class PluginRegistry:
    """Finds and builds stores, executors and strategies.

    Args:
        entry_points: whether to load plugins from the ``planner`` entry-point group
            (the built-ins are always registered).
        plugins: more plugin objects or modules to register.
    """

    def __init__(self, *, entry_points: bool = True, plugins: Iterable[object] = ()) -> None:
        self.manager = pluggy.PluginManager("planner")
        self.manager.add_hookspecs(hookspecs)
        self._lock = threading.Lock()
        self._table: dict[Kind, dict[str, Registration]] | None = None
        self._load_builtins_and_entry_points(entry_points)
        for plugin in plugins:
            self.register(plugin)
        self.manager.check_pending()

    def _load_builtins_and_entry_points(self, entry_points: bool) -> None:
        found_builtins = False
        allowed = os.environ.get(PLUGINS_ENV)
        allowed_names = (
            None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
        )
        for ep in importlib.metadata.entry_points(group="planner"):
            dist = ep.dist.name if ep.dist is not None else None
            builtin = dist == _BUILTIN_DIST and ep.value in _BUILTIN_MODULES
            if builtin:
                if self.manager.get_plugin(ep.value) is None:
                    self.manager.register(ep.load(), name=ep.value)
                found_builtins = True
                continue
            if not entry_points or (allowed_names is not None and ep.name not in allowed_names):
                continue
            if self.manager.get_plugin(ep.name) is None:
                self.manager.register(ep.load(), name=ep.name)
        if not found_builtins:  # running from a source tree that is not installed
            for module_name in _BUILTIN_MODULES:
                if self.manager.get_plugin(module_name) is None:
                    self.manager.register(importlib.import_module(module_name), name=module_name)

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object or module (its ``@hookimpl`` functions) at run time."""
        with self._lock:
            self.manager.register(plugin, name=name)
            try:
                self.manager.check_pending()
            except pluggy.PluginValidationError:
                # A rejected plugin must not stay registered and poison later lookups.
                self.manager.unregister(plugin)
                raise
            self._table = None

    def _collect(self) -> dict[Kind, dict[str, Registration]]:
        with self._lock:
            if self._table is not None:
                return self._table
            table: dict[Kind, dict[str, Registration]] = {k: {} for k in _HOOKS}
            for kind, hook_name in _HOOKS.items():
                hook = getattr(self.manager.hook, hook_name)
                for impl in hook.get_hookimpls():
                    plugin_name = self.manager.get_name(impl.plugin)

                    def register(
                        name: str,
                        factory: Callable[..., Any] | str,
                        *,
                        extra: str | None = None,
                        aliases: Iterable[str] = (),
                        _kind: Kind = kind,
                        _plugin: str | None = plugin_name,
                    ) -> None:
                        for n in (name, *aliases):
                            table[_kind][n] = Registration(_kind, n, factory, extra, _plugin)

                    impl.function(register=register)
            self._table = table
            return table

    def names(self, kind: Kind) -> list[str]:
        """Return the registered names of a kind, sorted."""
        return sorted(self._collect()[kind])

    def registration(self, kind: Kind, name_or_url: str) -> Registration:
        """Return the registration for a name or URL.

        Raises:
            UnknownPluginError: nothing of that kind has that name (with suggestions).
        """
        key = _scheme(name_or_url) if kind != "strategy" else name_or_url
        table = self._collect()[kind]
        try:
            return table[key]
        except KeyError:
            raise UnknownPluginError(kind, key, table) from None

    def create(self, kind: Kind, name_or_url: str, **options: Any) -> Any:
        """Build a plugin object: stores and executors get ``(url, **options)``, strategies ``()``.

        Raises:
            UnknownPluginError: no such name.
            MissingExtraError: its packages are not installed.
        """
        factory = self.registration(kind, name_or_url).load()
        if kind == "strategy":
            return factory(**options)
        return factory(name_or_url, **options)


_default: PluginRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> PluginRegistry:
    """Return the process-wide registry (built on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PluginRegistry()
        return _default


def _entry_point_strategy_names() -> list[str]:
    return default_registry().names("strategy")


def _install_strategy_names_hook() -> None:
    # planning_strategy accepts the names of installed strategy plugins; the
    # models module stays free of plugin machinery and asks through this hook.
    from planner import models

    models._plugin_names_hook = _entry_point_strategy_names


_install_strategy_names_hook()
