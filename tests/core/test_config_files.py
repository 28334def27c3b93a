"""Settings and mapping files: every way to get one wrong is one clear error with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from subledger.core.config_files import load_settings_file, read_mapping_file
from subledger.core.errors import ConfigError
from subledger.sync.settings import load_settings

KW = {"what": "mapping file", "missing_fix": "create it", "shape_fix": "write keys"}


def test_yaml_and_json_mappings_are_read(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("terms: {included: Included_Units__c}\n")
    (tmp_path / "m.json").write_text('{"terms": {"included": "Included_Units__c"}}')
    (tmp_path / "empty.yaml").write_text("")
    assert read_mapping_file(tmp_path / "m.yaml", **KW) == read_mapping_file(tmp_path / "m.json", **KW)
    assert read_mapping_file(tmp_path / "empty.yaml", **KW) == {}


@pytest.mark.parametrize(
    ("name", "text", "message", "fix"),
    [
        ("missing.yaml", None, "does not exist", "create it"),
        ("bad.yaml", "terms: [unclosed\n", ":2:1: not valid YAML", "correct the YAML syntax"),
        ("bad.json", "{nope", ":1:2: not valid JSON", "correct the JSON syntax"),
        ("list.yaml", "- a\n- b\n", "must hold a mapping", "write keys"),
    ],
)
def test_bad_files_name_the_file_and_the_fix(tmp_path: Path, name: str, text: str | None, message: str,
                                             fix: str) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as err:
        read_mapping_file(tmp_path / name, **KW)
    assert message in err.value.message and str(tmp_path / name) in err.value.message
    assert err.value.fix.startswith(fix)


def test_sync_settings_name_the_field_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "subledger.yaml"
    path.write_text("usage_drift_tolerance: lots\n")
    with pytest.raises(ConfigError, match="usage_drift_tolerance") as err:
        load_settings(path)
    assert "docs/sync.md" in err.value.fix
    assert load_settings(tmp_path / "absent.yaml").usage_drift_tolerance  # no file: the defaults


# --- One loader, strict everywhere (issue 15, Deliver 10 and 12) ----------------------------------

ALIAS_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]
) + "\n"


@pytest.mark.parametrize(
    ("text", "message", "fix"),
    [
        ("terms: {a: 1}\nterms: {b: 2}\n", ":2:1: not valid YAML (the key 'terms' appears twice (first on line 1))",
         "keep one 'terms'"),
        ("a:\n  b: 1\n  b: 2\n", ":3:3: not valid YAML (the key 'b' appears twice", "keep one 'b'"),
        (ALIAS_BOMB, "aliases repeat more than 10000 values", "write the values out"),
        ("a: &a [1, *a]\n", "alias *a is inside its own anchor", "write the values out"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels deep", "nest mappings and lists"),
        ("".join(f"{'  ' * i}k{i}:\n" for i in range(70)) + "  " * 70 + "v\n", "nested more than 64 levels deep",
         "nest mappings and lists"),
        ("a: \x01\n", "not valid YAML", "remove the control character"),
    ],
)
def test_yaml_is_read_strictly(tmp_path: Path, text: str, message: str, fix: str) -> None:
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        read_mapping_file(tmp_path / "m.yaml", **KW)
    assert message in err.value.message and str(tmp_path / "m.yaml") in err.value.message
    assert err.value.fix and fix in err.value.fix


def test_yaml_anchors_merges_and_overrides_still_work(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("base: &base {a: 1, b: 2}\nthis: {<<: *base, b: 3}\nlist: [*base, *base]\n")
    assert read_mapping_file(tmp_path / "m.yaml", **KW) == {
        "base": {"a": 1, "b": 2}, "this": {"a": 1, "b": 3}, "list": [{"a": 1, "b": 2}] * 2,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "a": 2}', "the key 'a' appears twice in one object"),
        ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "nested more than 64 levels deep"),
        ('{"a": ' + "[" * 100 + "]" * 100 + "}", "nested more than 64 levels deep"),
    ],
)
def test_json_is_read_strictly(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_mapping_file(tmp_path / "m.json", **KW)


def test_a_file_that_is_not_utf8_names_the_line_and_a_bom_is_fine(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"m.yaml:2: byte 12 is not UTF-8") as err:
        read_mapping_file(tmp_path / "m.yaml", **KW)
    assert err.value.fix == "save the file as UTF-8"
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert read_mapping_file(tmp_path / "bom.yaml", **KW) == {"a": 1}


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = 1


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notifiers: list[str] = []
    inner: _Inner = _Inner()


def test_load_settings_file_names_every_unknown_key_with_its_line_and_the_closest_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("notifiers: [a]\ninner:\n  limt: 2\nnotifers: [b]\n")
    with pytest.raises(ConfigError) as err:
        load_settings_file(path, _Settings, what="settings file", docs="docs/x.md")
    message, fix = err.value.message, err.value.fix or ""
    assert message == (f"settings file {path}: 2 problems: line 3: unknown key 'inner.limt'; "
                       "line 4: unknown key 'notifers'")
    assert "did you mean 'limit'?" in fix and "did you mean 'notifiers'?" in fix and "docs/x.md" in fix
    path.write_text("zzz: 1\n")
    with pytest.raises(ConfigError) as err:
        load_settings_file(path, _Settings, what="settings file", docs="docs/x.md")
    assert "the keys here are: notifiers, inner" in (err.value.fix or "")
    path.write_text("inner: {limit: lots}\n")
    with pytest.raises(ConfigError, match=r"line 1: inner.limit: Input should be a valid integer"):
        load_settings_file(path, _Settings, what="settings file", docs="docs/x.md")
    json_path = tmp_path / "s.json"
    json_path.write_text('{"inner": {"limit": 3}, "notifiers": ["x"]}')
    assert load_settings_file(json_path, _Settings, what="settings file", docs="docs/x.md").inner.limit == 3


def test_sync_settings_refuse_unknown_keys_at_any_depth(tmp_path: Path) -> None:
    path = tmp_path / "subledger.yaml"
    path.write_text("ownership: {usage: metering}\nidentity:\n  mastr: salesforce\n")
    with pytest.raises(ConfigError, match=r"line 3: unknown key 'identity.mastr'") as err:
        load_settings(path)
    assert "did you mean 'master'?" in (err.value.fix or "")
    path.write_text("auto_approve: [{rule: unbilled_usage, max_amount: '5.00'}]\nauto_approve: []\n")
    with pytest.raises(ConfigError, match="'auto_approve' appears twice"):
        load_settings(path)


def test_service_settings_refuse_a_misspelt_key_instead_of_silently_disabling_alerts(tmp_path: Path) -> None:
    from subledger.api.settings import load_service_settings

    path = tmp_path / "service.yaml"
    path.write_text("notifers:\n  - {notifier: slack, token: xoxb, channel: C1}\n")
    with pytest.raises(ConfigError, match=r"line 1: unknown key 'notifers'") as err:
        load_service_settings(path)
    assert "did you mean 'notifiers'?" in (err.value.fix or "")
    path.write_text("notifiers:\n  - {notifier: slack, token: xoxb, chanel: C1}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'chanel' for notifier 'slack': did you mean 'channel'"):
        load_service_settings(path)
    path.write_text("notifiers:\n  - {token: xoxb}\n")
    with pytest.raises(ConfigError, match=r"notifiers\[0\] names no notifier"):
        load_service_settings(path)
    path.write_text("notifiers:\n  - {notifier: slack, name: ops, token: xoxb, channel: C1}\n")
    assert load_service_settings(path).notifiers[0]["channel"] == "C1"


def test_the_chart_of_accounts_refuses_unknown_keys_and_keys_twice(tmp_path: Path) -> None:
    from subledger.core.revrec.accounts import ChartOfAccounts

    path = tmp_path / "coa.yaml"
    path.write_text("accounts: {cash: '1000 Cash'}\nrevenue:\n  defualt: '4000 Revenue'\n")
    with pytest.raises(ConfigError, match=r"unknown key revenue\.defualt") as err:
        ChartOfAccounts.load(path)
    assert "did you mean 'default'?" in (err.value.fix or "")
    path.write_text("acounts: {cash: '1000 Cash'}\n")
    with pytest.raises(ConfigError, match="unknown key acounts"):
        ChartOfAccounts.load(path)
    path.write_text("accounts: {cash: '1000 Cash', cash: '1001 Cash'}\n")
    with pytest.raises(ConfigError, match="'cash' appears twice"):
        ChartOfAccounts.load(path)
