"""The files connector as a plugin: registration, config, check, streams, folder layout."""

from __future__ import annotations

import importlib.metadata

import pytest
from pydantic import ValidationError

from subledger.core.errors import ConfigError
from subledger.core.plugins import PluginHost, PluginStatus
from subledger.plugins.files import FilesConfig, FilesConnector
from subledger.plugins.files.reader import discover


def test_registers_through_its_entry_point_like_any_plugin():
    entry_point = importlib.metadata.EntryPoint(name="files", value="subledger.plugins.files", group="subledger")
    host = PluginHost(environ={}, entry_points=[entry_point])
    assert host.connector_class("files") is FilesConnector
    [info] = host.report()
    assert info.status == PluginStatus.LOADED


def test_declares_its_streams_and_capabilities(folder):
    connector = folder.connector()
    assert [(s.name, s.record_type, s.primary_key) for s in connector.streams()] == [
        ("customers", "customer", ("external_id",)),
        ("meters", "meter", ("external_id",)),
        ("contracts", "contract", ("external_id",)),
        ("usage_events", "usage_event", ("event_id",)),
        ("invoices", "invoice", ("external_id",)),
        ("payments", "payment", ("external_id",)),
        ("credit_grants", "credit_grant", ("external_id",)),
        ("credit_notes", "credit_note", ("external_id",)),
    ]
    # Incremental on each file's position, not on a record field.
    assert {s.cursor_field for s in connector.streams()} == {"file_position"}
    assert connector.capabilities.read and connector.capabilities.incremental
    assert connector.capabilities.write == frozenset({"create_invoice"})  # the folder can be billed into


def test_config_makes_the_path_absolute_and_accepts_patterns_as_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = FilesConfig(path="data", usage_events="events/*.jsonl, more/*.csv")
    assert config.path == tmp_path / "data"
    assert config.usage_events == ("events/*.jsonl", "more/*.csv")
    # Stored and loaded again, the config is the same (nothing secret in it).
    assert FilesConfig.model_validate(config.model_dump(mode="json")) == config


def test_config_refuses_patterns_outside_the_folder_and_unknown_settings(tmp_path):
    with pytest.raises(ValidationError, match="must be relative to path and stay inside it"):
        FilesConfig(path=tmp_path, customers=("../elsewhere/*.csv",))
    with pytest.raises(ValidationError, match="extra"):
        FilesConfig(path=tmp_path, api_key="x")
    with pytest.raises(ValidationError):
        FilesConfig(path=tmp_path, checkpoint_every=0)


def test_check_counts_the_files_of_each_stream(folder):
    folder.write("customers.csv", "id,name\n")
    folder.write("usage/2026-03.jsonl", "")
    folder.write("usage/2026-04.csv", "")
    result = folder.connector().check()
    assert result.ok
    assert result.details["files"]["usage_events"] == 2
    assert result.message.endswith("3 files (1 customers, 2 usage_events)")


def test_check_of_an_empty_folder_passes_and_says_so(folder):
    result = folder.connector().check()
    assert result.ok
    assert "holds no files subledger recognises yet" in result.message


def test_check_fails_with_the_fix_for_a_missing_or_unreadable_folder(tmp_path):
    missing = FilesConnector(FilesConfig(path=tmp_path / "nope")).check()
    assert not missing.ok
    assert missing.message == (f"folder {tmp_path / 'nope'} does not exist. Fix: create it, or point the "
                               "connection's path at the data folder")
    (tmp_path / "file.txt").write_text("x")
    assert "is a file, not a folder" in FilesConnector(FilesConfig(path=tmp_path / "file.txt")).check().message


def test_check_fails_with_the_fix_for_an_unreadable_folder(folder, monkeypatch):
    from subledger.plugins.files import connector as module

    monkeypatch.setattr(module.os, "access", lambda path, mode: False)
    result = folder.connector().check()
    assert not result.ok
    assert result.message == (f"folder {folder.root} is not readable. Fix: give this user read access to "
                              f"{folder.root}")


def test_reading_a_missing_folder_or_an_unknown_stream_is_a_config_error(tmp_path, folder):
    with pytest.raises(ConfigError, match="does not exist") as missing:
        FilesConnector(FilesConfig(path=tmp_path / "nope")).read("customers", None)
    assert missing.value.fix
    with pytest.raises(ConfigError, match="has no stream 'orders'") as unknown:
        folder.connector().read("orders", None)
    assert "usage_events" in (unknown.value.fix or "")


def test_default_layout_finds_each_stream_at_the_top_or_in_its_own_folder(folder):
    names = [
        "customers.csv", "customers-eu.json", "customers/us/more.jsonl", "meters.yaml",
        "contracts/acme.yaml", "contracts/beta.yml", "contracts-2025.json",
        "usage.jsonl", "usage/2026/03.jsonl", "usage/2026/04.csv", "usage/events.ndjson",
        "invoices.csv", "invoices/2026-03.json", "payments.json",
        "credit_grants.csv", "credit_grants/2026/q1.yaml", "credit_notes.json", "credit_notes/eu.csv",
        # Not read: hidden files, editor backups, other extensions, other folders.
        "usage/.partial.jsonl", "usage/~lock.jsonl", "usage/x.jsonl~", "usage/notes.txt", "archive/usage.jsonl",
    ]
    for name in names:
        folder.write(name, "")
    config = FilesConfig(path=folder.root)
    found = {stream: [rel for rel, _ in discover(folder.root, getattr(config, stream))]
             for stream in ("customers", "meters", "contracts", "usage_events", "invoices", "payments",
                            "credit_grants", "credit_notes")}
    assert found == {
        "customers": ["customers-eu.json", "customers.csv", "customers/us/more.jsonl"],
        "meters": ["meters.yaml"],
        "contracts": ["contracts-2025.json", "contracts/acme.yaml", "contracts/beta.yml"],
        "usage_events": ["usage.jsonl", "usage/2026/03.jsonl", "usage/2026/04.csv", "usage/events.ndjson"],
        "invoices": ["invoices.csv", "invoices/2026-03.json"],
        "payments": ["payments.json"],
        "credit_grants": ["credit_grants.csv", "credit_grants/2026/q1.yaml"],
        "credit_notes": ["credit_notes.json", "credit_notes/eu.csv"],
    }


def test_custom_patterns_and_a_file_of_an_unknown_format(folder, read):
    folder.write("exports/events.txt", "")
    folder.write("exports/events.jsonl", '{"event_id": "e", "customer": "a", "meter": "m", "quantity": 1, '
                 '"timestamp": "2026-03-01T00:00:00Z"}\n')
    result = read("usage_events", usage_events=("exports/*",))
    assert result.event_ids == ["e"]
    [reject] = result.rejects
    assert (reject.location, reject.reason) == ("exports/events.txt", ".txt is not a usage format")


def test_the_repr_shows_the_config(folder):
    assert repr(folder.connector()) == (
        f"FilesConnector(connection='files', config={FilesConfig(path=folder.root)!r})"
    )


def test_an_unreadable_file_is_reported_and_the_others_still_load(folder, read, monkeypatch):
    from subledger.plugins.files import reader

    folder.write("customers/a.csv", "id,name\nacme,Acme\n")
    folder.write("customers/b.csv", "id,name\nbeta,Beta\n")
    real = reader.read_whole

    def read_whole(path, previous):
        if path.name == "b.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, previous)

    monkeypatch.setattr(reader, "read_whole", read_whole)
    result = read("customers")
    assert [c.external_id for c in result.records] == ["acme"]
    [reject] = result.rejects
    assert (reject.location, reject.reason) == ("customers/b.csv", "cannot read the file: Permission denied")
    assert reject.fix == "check that the file exists and is readable by this user"
    # Nothing is remembered about b.csv, so it is read as soon as it can be.
    assert list(result.state["files"]) == ["customers/a.csv"]
