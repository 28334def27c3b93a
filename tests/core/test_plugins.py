"""The plugin host: entry-point discovery, failures reported not fatal, allow/block lists,
lazy once-per-process loading, and what each plugin registered.

Third-party plugins are simulated by writing a real ``*.dist-info`` (METADATA plus
``entry_points.txt``) and a module into a temporary directory on ``sys.path``: the host
finds them through ``importlib.metadata`` exactly as it finds installed distributions.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pluggy
import pytest

from subledger.core import hookspecs, plugins
from subledger.core.errors import ConfigError
from subledger.core.plugins import PluginHost, PluginStatus

CONNECTOR_PLUGIN = """
from subledger.core.hookspecs import hookimpl
from subledger.testing.memory import MemoryConnector

IMPORTS = globals().get("IMPORTS", 0) + 1
CALLS = []


class {cls}(MemoryConnector):
    name = "{connector}"


@hookimpl
def register_connectors(register):
    CALLS.append("register_connectors")
    register({cls})
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_plugins: None) -> Iterator[Callable[..., str]]:
    """Install fake distributions: ``site(dist, version, {ep_name: source})`` -> module prefix.

    Each entry point gets its own module, named uniquely per test so nothing leaks
    between tests through ``sys.modules``.
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    prefix = f"sl_test_{abs(hash(tmp_path)) % 10**8}"
    created: list[str] = []

    def install(dist: str, version: str, plugins_: dict[str, str]) -> str:
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        info.joinpath("METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = ["[subledger]"]
        for ep_name, source in plugins_.items():
            module = f"{prefix}_{ep_name}"
            root.joinpath(f"{module}.py").write_text(textwrap.dedent(source))
            lines.append(f"{ep_name} = {module}")
            created.append(module)
        info.joinpath("entry_points.txt").write_text("\n".join(lines) + "\n")
        return prefix

    yield install
    for module in created:
        sys.modules.pop(module, None)


def connector_source(connector: str, cls: str = "AcmeConnector") -> str:
    return CONNECTOR_PLUGIN.format(connector=connector, cls=cls)


def info(name: str) -> plugins.PluginInfo:
    return next(i for i in plugins.plugin_report() if i.name == name)


# -- discovery ---------------------------------------------------------------------------------


def test_builtin_plugins_load_through_the_entry_point_group(isolated_plugins: None) -> None:
    declared = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="subledger")}
    assert declared.get("files") == "subledger.plugins.files"
    files = info("files")
    assert (files.module, files.distribution) == ("subledger.plugins.files", "subledger")
    assert files.version == importlib.metadata.version("subledger")


def test_a_third_party_distribution_is_discovered_with_its_name_and_version(site) -> None:
    site("acme-subledger", "1.2.3", {"acme": connector_source("acme")})

    acme = info("acme")

    assert acme.status is PluginStatus.LOADED and acme.error is None
    assert (acme.distribution, acme.version, acme.connectors) == ("acme-subledger", "1.2.3", ["acme"])
    assert plugins.get_connector_class("acme").__name__ == "AcmeConnector"
    assert "acme" in plugins.connector_classes()


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_still_load(site) -> None:
    site("broken-subledger", "0.1", {"broken": "import does_not_exist_anywhere\n"})
    site("acme-subledger", "1.0", {"acme": connector_source("acme")})

    broken = info("broken")

    assert broken.status is PluginStatus.FAILED
    assert broken.error == "import failed: ModuleNotFoundError: No module named 'does_not_exist_anywhere'"
    assert info("acme").status is PluginStatus.LOADED
    assert "acme" in plugins.connector_classes()
    with pytest.raises(ConfigError) as raised:
        plugins.get_connector_class("broken")
    assert "plugin 'broken' failed to load" in str(raised.value)


def test_loading_is_lazy_and_happens_once_per_process(site) -> None:
    prefix = site("acme-subledger", "1.0", {"acme": connector_source("acme")})
    module = f"{prefix}_acme"

    plugins.get_plugin_host()
    assert module not in sys.modules  # creating the host imports nothing

    plugins.connector_classes()
    plugins.connector_classes()
    plugins.plugin_report()
    assert sys.modules[module].IMPORTS == 1
    assert sys.modules[module].CALLS == ["register_connectors"]

    plugins.reset_plugins()
    plugins.connector_classes()
    assert sys.modules[module].CALLS == ["register_connectors", "register_connectors"]


# -- allow and block lists ---------------------------------------------------------------------


def test_the_allow_list_loads_only_the_named_plugins(site, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = site("two-plugins", "1.0", {"alpha": connector_source("alpha"), "beta": connector_source("beta")})
    monkeypatch.setenv("SUBLEDGER_LOAD_PLUGINS", " alpha , ")

    assert info("alpha").status is PluginStatus.LOADED
    assert info("beta").status is PluginStatus.NOT_ALLOWED
    assert info("files").status is PluginStatus.NOT_ALLOWED
    assert f"{prefix}_beta" not in sys.modules
    with pytest.raises(ConfigError, match="add it to SUBLEDGER_LOAD_PLUGINS"):
        plugins.get_connector_class("beta")


def test_an_empty_allow_list_loads_no_plugin(site, monkeypatch: pytest.MonkeyPatch) -> None:
    site("acme-subledger", "1.0", {"acme": connector_source("acme")})
    monkeypatch.setenv("SUBLEDGER_LOAD_PLUGINS", "")

    assert plugins.connector_classes() == {}
    assert {i.status for i in plugins.plugin_report()} == {PluginStatus.NOT_ALLOWED}


def test_the_block_list_wins_and_blocked_plugins_are_never_imported(
    site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = site("acme-subledger", "1.0", {"acme": connector_source("acme")})
    monkeypatch.setenv("SUBLEDGER_LOAD_PLUGINS", "acme,files")
    monkeypatch.setenv("SUBLEDGER_BLOCK_PLUGINS", "acme,no_such_plugin")

    assert info("acme").status is PluginStatus.BLOCKED
    assert f"{prefix}_acme" not in sys.modules
    assert "SUBLEDGER_BLOCK_PLUGINS names 'no_such_plugin', which is not an installed subledger plugin" in caplog.text
    with pytest.raises(ConfigError) as raised:
        plugins.get_connector_class("acme")
    assert "plugin 'acme' is blocked: remove it from SUBLEDGER_BLOCK_PLUGINS" in str(raised.value)


# -- looking connectors up ---------------------------------------------------------------------


def test_an_unknown_connector_names_the_available_ones_and_the_fix(site) -> None:
    site("acme-subledger", "1.0", {"acme": connector_source("acme")})

    with pytest.raises(ConfigError) as raised:
        plugins.get_connector_class("nosuch")

    assert raised.value.message == "no connector named 'nosuch' is registered"
    assert "acme" in raised.value.fix and "files" in raised.value.fix
    assert "install the plugin that provides 'nosuch'" in raised.value.fix


def test_two_plugins_registering_one_connector_name_is_an_error_naming_both(site) -> None:
    site("acme-subledger", "1.0", {"acme": connector_source("dup", "A")})
    site("other-subledger", "2.0", {"other": connector_source("dup", "B")})

    expected = (
        "connector 'dup' is registered by more than one plugin: 'acme' (from acme-subledger 1.0) "
        "and 'other' (from other-subledger 2.0); block all but one with SUBLEDGER_BLOCK_PLUGINS"
    )
    assert info("acme").error == expected
    assert info("other").error == expected
    assert "dup" not in plugins.connector_classes()
    with pytest.raises(ConfigError, match="registered by more than one plugin") as raised:
        plugins.get_connector_class("dup")
    assert "'acme' (from acme-subledger 1.0) and 'other' (from other-subledger 2.0)" in str(raised.value)


# -- plugins that misbehave are reported -------------------------------------------------------


BAD_PLUGINS = {
    "raises": (
        "from subledger.core.hookspecs import hookimpl\n"
        "@hookimpl\ndef register_connectors(register):\n    raise RuntimeError('no licence file')\n",
        "register_connectors raised RuntimeError: no licence file",
    ),
    "not_a_connector": (
        "from subledger.core.hookspecs import hookimpl\n"
        "@hookimpl\ndef register_connectors(register):\n    register(dict)\n",
        "which is not a Connector subclass",
    ),
    "typo": (
        "from subledger.core.hookspecs import hookimpl\n"
        "@hookimpl\ndef register_conectors(register):\n    pass\n",
        "implements 'register_conectors', which is not a subledger hook; did you mean 'register_connectors'?",
    ),
    "unmarked": (
        "def register_connectors(register):\n    pass\n",
        "register_connectors is not marked as a hook: decorate it with @subledger.core.hookspecs.hookimpl",
    ),
    "wrong_argument": (
        "from subledger.core.hookspecs import hookimpl\n"
        "@hookimpl\ndef register_connectors(reg):\n    pass\n",
        "PluginValidationError",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_PLUGINS))
def test_a_misbehaving_plugin_is_failed_with_its_reason(site, name: str) -> None:
    source, reason = BAD_PLUGINS[name]
    site("bad-subledger", "1.0", {name: source, "acme": connector_source("acme")})

    bad = info(name)

    assert bad.status is PluginStatus.FAILED
    assert reason in (bad.error or "")
    assert bad.connectors == []
    assert info("acme").status is PluginStatus.LOADED


def test_rules_notifiers_and_sandboxes_are_collected_per_plugin(site) -> None:
    site("extras-subledger", "1.0", {"extras": """
        from subledger.core.hookspecs import hookimpl

        class UnbilledUsage:
            name = "acme_unbilled_usage"

        class Slack:
            name = "acme_chat"

        class AcmeSandbox:
            name = "acme"

        @hookimpl
        def register_rules(register):
            register(UnbilledUsage)

        @hookimpl
        def register_notifiers(register):
            register(Slack)

        @hookimpl
        def register_sandboxes(register):
            register(AcmeSandbox)
    """})

    extras = info("extras")

    assert (extras.rules, extras.notifiers, extras.sandboxes) == (["acme_unbilled_usage"], ["acme_chat"], ["acme"])
    assert plugins.rule_classes()["acme_unbilled_usage"].__name__ == "UnbilledUsage"
    assert plugins.notifier_classes()["acme_chat"].__name__ == "Slack"
    assert plugins.sandbox_classes()["acme"].__name__ == "AcmeSandbox"
    assert json.loads(json.dumps(extras.to_dict()))["status"] == "loaded"


def test_a_plugin_object_can_be_registered_and_removed_in_code(isolated_plugins: None) -> None:
    from subledger.testing.memory import MemoryPlugin

    registered = plugins.register_plugin(MemoryPlugin(), name="in-code")
    assert (registered.status, registered.distribution) == (PluginStatus.LOADED, None)
    assert plugins.get_connector_class("memory").name == "memory"
    assert info("in-code").connectors == ["memory"]
    with pytest.raises(ConfigError, match="already registered"):
        plugins.register_plugin(MemoryPlugin(), name="in-code")

    plugins.unregister_plugin("in-code")
    assert "memory" not in plugins.connector_classes()


def test_a_conflict_clears_when_one_of_the_two_plugins_goes(isolated_plugins: None) -> None:
    from subledger.testing.memory import MemoryPlugin

    plugins.register_plugin(MemoryPlugin(), name="first")
    plugins.register_plugin(MemoryPlugin(), name="second")
    assert "registered by more than one plugin" in (info("first").error or "")

    plugins.unregister_plugin("second")

    assert info("first").error is None
    assert plugins.get_connector_class("memory").name == "memory"


def test_the_memory_test_connector_is_not_an_installed_plugin(isolated_plugins: None) -> None:
    assert "memory" not in plugins.connector_classes()
    assert all(i.name != "memory" for i in plugins.plugin_report())


def test_a_host_can_be_built_on_given_entry_points_and_environment() -> None:
    ep = importlib.metadata.EntryPoint(name="files", value="subledger.plugins.files", group="subledger")
    host = PluginHost(environ={"SUBLEDGER_BLOCK_PLUGINS": "files"}, entry_points=[ep])

    assert [(i.name, i.status) for i in host.report()] == [("files", PluginStatus.BLOCKED)]
    assert host.registered("connectors") == {}


def test_hooks_are_called_with_keyword_arguments_only() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)

    with pytest.raises(TypeError):
        pm.hook.register_connectors(lambda cls: None)  # positional: refused by pluggy
    assert pm.hook.register_connectors(register=lambda cls: None) == []


# -- docs/plugin-hooks.md documents every hook with its exact signature -----------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugin-hooks.md"


def hookspec_signatures() -> dict[str, str]:
    """``def name(params) -> return`` of each hookspec, written as in the source."""
    found = {}
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if not hasattr(fn, f"{hookspecs.PROJECT}_spec"):
            continue
        params = []
        kw_only_marked = False
        for p in inspect.signature(fn).parameters.values():
            if p.kind is p.KEYWORD_ONLY and not kw_only_marked:
                params.append("*")
                kw_only_marked = True
            text = p.name
            if p.annotation is not p.empty:
                text += f": {p.annotation}"
            if p.default is not p.empty:
                text += f" = {p.default!r}"
            params.append(text)
        found[name] = f"def {name}({', '.join(params)}) -> {fn.__annotations__.get('return', 'None')}"
    return found


def doc_problems(doc: str, signatures: dict[str, str]) -> list[str]:
    """Hooks whose heading or exact signature is missing from the page; hooks it invents."""
    problems = []
    headings = set(re.findall(r"^##+\s+`?(\w+)`?\s*$", doc, flags=re.MULTILINE))
    code = "\n".join(re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL))
    documented = set(re.findall(r"^def (\w+)\(", code, flags=re.MULTILINE))
    for name, signature in signatures.items():
        if name not in headings:
            problems.append(f"{name}: no section")
        if signature not in code.splitlines():
            problems.append(f"{name}: signature {signature!r} not shown")
    problems += [f"{name}: documented but not a hook" for name in sorted(documented - set(signatures))]
    return problems


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    signatures = hookspec_signatures()
    assert set(signatures) == {"register_connectors", "register_rules", "register_notifiers", "register_sandboxes"}
    assert doc_problems(DOC.read_text(), signatures) == []


def test_the_doc_check_fails_when_a_hook_or_its_signature_is_missing() -> None:
    signatures = hookspec_signatures()
    doc = DOC.read_text()
    changed = doc.replace(signatures["register_rules"], "def register_rules(register) -> None")
    dropped = doc.replace("## register_sandboxes", "## sandboxes")

    assert doc_problems(changed, signatures) == [
        f"register_rules: signature {signatures['register_rules']!r} not shown"
    ]
    assert doc_problems(dropped, signatures) == ["register_sandboxes: no section"]
    assert doc_problems(doc + "\n```python\ndef register_widgets(register) -> None\n```\n", signatures) == [
        "register_widgets: documented but not a hook"
    ]
