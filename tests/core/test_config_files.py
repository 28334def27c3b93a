"""Settings and mapping files: every way to get one wrong is one clear error with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from subledger.core.config_files import read_mapping_file
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
        ("bad.yaml", "terms: [unclosed\n", "is not valid YAML", "fix the YAML syntax"),
        ("bad.json", "{nope", "is not valid JSON", "fix the JSON syntax"),
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
