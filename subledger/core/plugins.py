"""The plugin host: finds plugins through the ``subledger`` entry-point group and asks them
what they provide.

Built-in connectors are declared as entry points in subledger's own ``pyproject.toml``,
so they load exactly as a third party's plugin would. Loading is lazy (on the first
question asked of the host) and happens once per process; :func:`reset_plugins` starts
over (for tests).

A plugin that fails to import, whose hook raises, or that registers something invalid is
*reported* (:func:`plugin_report`), never fatal: the rest still load.

Environment:

* ``SUBLEDGER_LOAD_PLUGINS``: comma-separated allow-list of entry-point names. When set
  (even to an empty string) only the listed plugins load; the others are reported as
  ``not-allowed``.
* ``SUBLEDGER_BLOCK_PLUGINS``: comma-separated block-list; listed plugins are reported as
  ``blocked`` and never imported. Blocking wins over allowing.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pluggy

from subledger.core import hookspecs
from subledger.core.connector import Connector, ConnectorConfig
from subledger.core.errors import ConfigError
from subledger.core.secrets import redact

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "subledger"
LOAD_PLUGINS_ENV = "SUBLEDGER_LOAD_PLUGINS"
BLOCK_PLUGINS_ENV = "SUBLEDGER_BLOCK_PLUGINS"

# hook name -> the PluginInfo attribute that lists what the hook registered
_HOOK_KINDS: dict[str, str] = {
    "register_connectors": "connectors",
    "register_rules": "rules",
    "register_notifiers": "notifiers",
    "register_sandboxes": "sandboxes",
}
_CONNECTOR_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class PluginStatus(StrEnum):
    """What happened to a plugin."""

    LOADED = "loaded"
    FAILED = "failed"
    BLOCKED = "blocked"
    NOT_ALLOWED = "not-allowed"


@dataclass
class PluginInfo:
    """One plugin as the host sees it: where it came from, what happened, what it registered.

    Attributes:
        name: the entry-point name (or the name given to :func:`register_plugin`).
        module: the entry point's value (``package.module``) or the plugin object's module.
        distribution: the installed distribution that declares the entry point, if any.
        version: that distribution's version.
        status: loaded, failed, blocked or not-allowed.
        error: why it failed, or a conflict it is part of (a loaded plugin may carry one).
        connectors, rules, notifiers, sandboxes: names of what it registered.
    """

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    status: PluginStatus = PluginStatus.LOADED
    error: str | None = None
    connectors: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    notifiers: list[str] = field(default_factory=list)
    sandboxes: list[str] = field(default_factory=list)

    def add_error(self, text: str) -> None:
        """Append one problem to :attr:`error` (a plugin can have several)."""
        self.error = f"{self.error}; {text}" if self.error else text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (for ``subledger plugins --json``)."""
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "status": str(self.status),
            "error": self.error,
            "connectors": list(self.connectors),
            "rules": list(self.rules),
            "notifiers": list(self.notifiers),
            "sandboxes": list(self.sandboxes),
        }


@dataclass
class _Registry:
    """What every loaded plugin registered, by kind then name, with the owning plugin(s)."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def add(self, kind: str, name: str, obj: Any, plugin: str) -> None:
        self.items.setdefault(kind, {}).setdefault(name, obj)
        self.owners.setdefault(kind, {}).setdefault(name, []).append(plugin)

    def usable(self, kind: str) -> dict[str, Any]:
        """Names registered by exactly one plugin; ambiguous names are not usable."""
        owners = self.owners.get(kind, {})
        return {n: obj for n, obj in self.items.get(kind, {}).items() if len(owners[n]) == 1}


def _names(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _describe(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")


class PluginHost:
    """A pluggy plugin manager plus the report of what each plugin did.

    Most code uses the process-wide host through the module functions
    (:func:`connector_classes`, :func:`plugin_report`, ...). Tests may build their own.

    Args:
        environ: where ``SUBLEDGER_LOAD_PLUGINS``/``SUBLEDGER_BLOCK_PLUGINS`` are read.
        entry_points: the entry points to consider (default: the installed ``subledger``
            group); mainly for tests.
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
    ) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self._environ = os.environ if environ is None else environ
        self._entry_points = entry_points
        self._infos: dict[str, PluginInfo] = {}
        self._registry: _Registry | None = None
        self._loaded = False
        self._lock = threading.RLock()

    # -- loading -----------------------------------------------------------------------

    def load(self) -> None:
        """Load the entry-point plugins (once; later calls do nothing)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            allow = _names(self._environ.get(LOAD_PLUGINS_ENV))
            block = _names(self._environ.get(BLOCK_PLUGINS_ENV)) or set()
            eps = self._entry_points
            if eps is None:
                eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            seen: set[str] = set()
            for ep in sorted(eps, key=lambda e: (e.name, e.value)):
                seen.add(ep.name)
                self._load_entry_point(ep, allow=allow, block=block)
            for env, names in ((LOAD_PLUGINS_ENV, allow or set()), (BLOCK_PLUGINS_ENV, block)):
                for unknown in sorted(names - seen):
                    log.warning(
                        "%s names %r, which is not an installed subledger plugin (installed: %s)",
                        env, unknown, ", ".join(sorted(seen)) or "none",
                    )
            self._registry = None

    def _load_entry_point(
        self, ep: importlib.metadata.EntryPoint, *, allow: set[str] | None, block: set[str]
    ) -> None:
        dist = getattr(ep, "dist", None)
        info = PluginInfo(
            name=ep.name,
            module=ep.value,
            distribution=dist.metadata["Name"] if dist is not None else None,
            version=dist.version if dist is not None else None,
        )
        if ep.name in self._infos:
            other = self._infos[ep.name]
            info.status = PluginStatus.FAILED
            info.error = (
                f"entry point name {ep.name!r} is also declared by "
                f"{other.distribution or other.module}; uninstall one of the two distributions"
            )
            self._infos[f"{ep.name} ({info.distribution or ep.value})"] = info
            return
        self._infos[ep.name] = info
        if ep.name in block:
            info.status = PluginStatus.BLOCKED
            self.manager.set_blocked(ep.name)
            return
        if allow is not None and ep.name not in allow:
            info.status = PluginStatus.NOT_ALLOWED
            return
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the host down
            info.status = PluginStatus.FAILED
            info.error = f"import failed: {_describe(exc)}"
            log.warning("subledger plugin %r failed to load: %s", ep.name, info.error)
            return
        self._register(plugin, info)

    def _register(self, plugin: Any, info: PluginInfo) -> None:
        problems = _unmarked_hooks(plugin)
        if not problems:
            try:
                self.manager.register(plugin, name=info.name)
            except Exception as exc:  # pluggy validates hookimpl signatures here
                problems.append(_describe(exc))
            else:
                problems.extend(self._unknown_hooks(plugin))
                if problems:
                    self.manager.unregister(plugin)
        if problems:
            info.status = PluginStatus.FAILED
            info.error = "; ".join(problems)
            log.warning("subledger plugin %r failed to load: %s", info.name, info.error)

    def _unknown_hooks(self, plugin: Any) -> list[str]:
        problems = []
        for caller in self.manager.get_hookcallers(plugin) or []:
            if caller.spec is None:
                near = difflib.get_close_matches(caller.name, list(_HOOK_KINDS), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                problems.append(f"implements {caller.name!r}, which is not a subledger hook{hint}")
        return problems

    def register(self, plugin: Any, name: str | None = None) -> PluginInfo:
        """Register a plugin object that no entry point declares (tests, embedding).

        Returns its :class:`PluginInfo`; a plugin that fails validation is reported there
        (status failed), as an entry-point plugin would be.
        """
        with self._lock:
            self.load()
            name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            if name in self._infos:
                raise ConfigError(
                    f"a subledger plugin named {name!r} is already registered",
                    fix="give the plugin another name, or unregister the first one",
                )
            module = getattr(plugin, "__name__", None) if inspect.ismodule(plugin) else None
            info = PluginInfo(name=name, module=module or getattr(plugin, "__module__", "") or name)
            self._infos[name] = info
            self._register(plugin, info)
            self._registry = None
            return info

    def unregister(self, name: str) -> None:
        """Remove a plugin registered with :meth:`register` (or any loaded plugin)."""
        with self._lock:
            plugin = self.manager.get_plugin(name)
            if plugin is not None:
                self.manager.unregister(plugin)
            self._infos.pop(name, None)
            self._registry = None

    # -- what plugins registered ---------------------------------------------------------

    def _build_registry(self) -> _Registry:
        with self._lock:
            self.load()
            if self._registry is not None:
                return self._registry
            registry = _Registry()
            for info in self._infos.values():
                for kind in _HOOK_KINDS.values():
                    getattr(info, kind).clear()
                if info.status is PluginStatus.LOADED:
                    info.error = None  # a loaded plugin's error is a conflict, recomputed below
            for name, plugin in self.manager.list_name_plugin():
                info = self._infos.get(name)
                if info is None or info.status is not PluginStatus.LOADED or plugin is None:
                    continue
                found = self._collect(name, plugin, info)
                if info.status is not PluginStatus.LOADED:
                    continue
                for kind, entries in found.items():
                    for entry_name, obj in entries:
                        registry.add(kind, entry_name, obj, name)
                        getattr(info, kind).append(entry_name)
            self._report_conflicts(registry)
            self._registry = registry
            return registry

    def _collect(self, name: str, plugin: Any, info: PluginInfo) -> dict[str, list[tuple[str, Any]]]:
        """Call each hook of one plugin alone, so every registration has a known owner."""
        others = [p for p in self.manager.get_plugins() if p is not plugin]
        found: dict[str, list[tuple[str, Any]]] = {}
        for hook_name, kind in _HOOK_KINDS.items():
            entries: list[tuple[str, Any]] = found.setdefault(kind, [])
            validate = _VALIDATORS[kind]

            def register(obj: Any, _entries: list[tuple[str, Any]] = entries, _v=validate) -> None:
                _entries.append((_v(obj), obj))

            caller = self.manager.subset_hook_caller(hook_name, remove_plugins=others)
            try:
                caller(register=register)
            except Exception as exc:  # a plugin's bug is reported, not fatal
                info.status = PluginStatus.FAILED
                info.add_error(f"{hook_name} raised {_describe(exc)}")
                log.warning("subledger plugin %r failed: %s", name, info.error)
                return {}
        return found

    def _report_conflicts(self, registry: _Registry) -> None:
        for kind, owners in registry.owners.items():
            for entry_name, plugins in owners.items():
                if len(plugins) < 2:
                    continue
                described = " and ".join(self._describe_plugin(p) for p in plugins)
                text = (
                    f"{kind[:-1]} {entry_name!r} is registered by more than one plugin: {described}; "
                    f"block all but one with {BLOCK_PLUGINS_ENV}"
                )
                for plugin in set(plugins):
                    self._infos[plugin].add_error(text)

    def _describe_plugin(self, name: str) -> str:
        info = self._infos[name]
        if info.distribution:
            return f"{name!r} (from {info.distribution} {info.version})"
        return f"{name!r} ({info.module})"

    # -- questions the CLI and the engine ask ---------------------------------------------

    def report(self) -> list[PluginInfo]:
        """Every plugin the host knows about, sorted by name."""
        self._build_registry()
        return sorted(self._infos.values(), key=lambda i: i.name)

    def registered(self, kind: str) -> dict[str, Any]:
        """Usable registrations of one kind (``connectors``, ``rules``, ...), by name."""
        return dict(sorted(self._build_registry().usable(kind).items()))

    def connector_class(self, name: str) -> type[Connector]:
        """The connector class registered as ``name``; a ConfigError names the fix."""
        registry = self._build_registry()
        owners = registry.owners.get("connectors", {}).get(name, [])
        if len(owners) > 1:
            described = " and ".join(self._describe_plugin(p) for p in owners)
            raise ConfigError(
                f"connector {name!r} is registered by more than one plugin: {described}",
                fix=f"uninstall one, or block it with {BLOCK_PLUGINS_ENV}={owners[-1]}",
            )
        usable = registry.usable("connectors")
        if name in usable:
            return usable[name]
        available = ", ".join(sorted(usable)) or "none"
        fix = f"use one of the available connectors ({available}), or install the plugin that provides {name!r}"
        extra = self._why_missing(name)
        if extra:
            fix = f"{extra}; or {fix}"
        raise ConfigError(f"no connector named {name!r} is registered", fix=fix)

    def _why_missing(self, name: str) -> str:
        info = self._infos.get(name)
        if info is None:
            return ""
        if info.status is PluginStatus.BLOCKED:
            return f"plugin {name!r} is blocked: remove it from {BLOCK_PLUGINS_ENV}"
        if info.status is PluginStatus.NOT_ALLOWED:
            return f"plugin {name!r} is not allowed: add it to {LOAD_PLUGINS_ENV}"
        if info.status is PluginStatus.FAILED:
            return f"plugin {name!r} failed to load ({info.error}): reinstall or fix it"
        return ""


def _unmarked_hooks(plugin: Any) -> list[str]:
    """Functions named like a hook but missing ``@hookimpl`` would be silently ignored."""
    problems = []
    for hook_name in _HOOK_KINDS:
        impl = getattr(plugin, hook_name, None)
        if callable(impl) and not hasattr(impl, f"{hookspecs.PROJECT}_impl"):
            problems.append(
                f"{hook_name} is not marked as a hook: decorate it with "
                "@subledger.core.hookspecs.hookimpl"
            )
    return problems


def _entry_name(obj: Any) -> str:
    name = getattr(obj, "name", None)
    if isinstance(name, str) and name:
        return name
    name = getattr(obj, "__name__", None) or type(obj).__name__
    return str(name)


def _validate_connector(cls: Any) -> str:
    if not (inspect.isclass(cls) and issubclass(cls, Connector)):
        raise TypeError(f"register_connectors got {cls!r}, which is not a Connector subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _CONNECTOR_NAME.match(name):
        raise TypeError(
            f"{cls.__name__}.name must be a lowercase identifier like 'stripe', not {name!r}"
        )
    config_model = getattr(cls, "config_model", None)
    if not (inspect.isclass(config_model) and issubclass(config_model, ConnectorConfig)):
        raise TypeError(f"{cls.__name__}.config_model must be a ConnectorConfig subclass")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise TypeError(f"{cls.__name__} does not implement {missing}")
    return name


def _validate_class(kind: str) -> Callable[[Any], str]:
    def validate(obj: Any) -> str:
        if not inspect.isclass(obj):
            raise TypeError(f"register_{kind} expects a class, got {obj!r}")
        return _entry_name(obj)

    return validate


_VALIDATORS: dict[str, Callable[[Any], str]] = {
    "connectors": _validate_connector,
    "rules": _entry_name,
    "notifiers": _validate_class("notifiers"),
    "sandboxes": _validate_class("sandboxes"),
}


# -- the process-wide host ----------------------------------------------------------------

_host: PluginHost | None = None
_host_lock = threading.Lock()


def get_plugin_host() -> PluginHost:
    """The process-wide host, created on first use. Entry points load on the first question."""
    global _host
    with _host_lock:
        if _host is None:
            _host = PluginHost()
        return _host


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide pluggy manager, with entry-point plugins loaded."""
    host = get_plugin_host()
    host.load()
    return host.manager


def reset_plugins() -> None:
    """Forget the process-wide host; the next question loads plugins afresh (for tests)."""
    global _host
    with _host_lock:
        _host = None


def register_plugin(plugin: Any, name: str | None = None) -> PluginInfo:
    """Register a plugin object into the process-wide host (see :meth:`PluginHost.register`)."""
    return get_plugin_host().register(plugin, name)


def unregister_plugin(name: str) -> None:
    """Remove a plugin from the process-wide host."""
    get_plugin_host().unregister(name)


def plugin_report() -> list[PluginInfo]:
    """Every plugin: name, module, distribution and version, status, error, registrations."""
    return get_plugin_host().report()


def connector_classes() -> dict[str, type[Connector]]:
    """Connector classes by name (names registered by two plugins are left out)."""
    return get_plugin_host().registered("connectors")


def get_connector_class(name: str) -> type[Connector]:
    """The connector class called ``name``; a ConfigError lists the available ones."""
    return get_plugin_host().connector_class(name)


def rule_classes() -> dict[str, Any]:
    """Reconciliation rules (classes or instances) by name."""
    return get_plugin_host().registered("rules")


def notifier_classes() -> dict[str, type[Any]]:
    """Notifier classes by name."""
    return get_plugin_host().registered("notifiers")


def sandbox_classes() -> dict[str, type[Any]]:
    """Vendor sandbox server classes by name."""
    return get_plugin_host().registered("sandboxes")
