"""Fuzzing contract files through ``subledger rate`` (issue 15, Deliver 11).

Valid contracts, in YAML and JSON, of every price model, broken by random mutations
(garbled bytes, truncation, keys written twice, huge numbers, dates far out of range,
deep nesting, alias bombs, unicode) and rated from files with random periods, in-process
through the real command line. Whatever the files hold, ``subledger rate`` either rates
the period or stops with a ConfigError that names the fix: never an internal error.

Bounded: about 120 examples; ``SUBLEDGER_FUZZ_EXAMPLES`` raises it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from fuzz_support import (
    FIELDS,
    MUTATIONS,
    PERIODS,
    PRICES,
    VALUES,
    Mutation,
    build_usage,
    contract,
    mutate_bytes,
    render,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from subledger.cli import app
from subledger.core.errors import FailureKind, SubledgerError, classify

EXAMPLES = int(os.environ.get("SUBLEDGER_FUZZ_EXAMPLES", "60")) * 2

def run(contract_path: Path, usage_path: Path, period: str) -> None:
    result = CliRunner().invoke(app, ["rate", "--contract", str(contract_path), "--usage", str(usage_path),
                                      "--period", period, "--json"])
    exc = result.exception
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, 2)):
        return
    assert isinstance(exc, SubledgerError) and classify(exc) is FailureKind.CONFIG, (type(exc), exc)
    assert exc.fix, exc


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("SUBLEDGER_FUZZ_RANDOM"),
          suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(["yaml", "json"]),
    price=st.sampled_from(PRICES),
    # About half the examples keep the contract valid, so that rating itself is exercised too.
    changes=st.one_of(st.just([]), st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from(VALUES)),
                                            max_size=2)),
    extras=st.booleans(),
    twice=st.sampled_from([None] * 6 + ["currency", "start_date", "components"]),
    mutations=st.one_of(st.just([]), st.lists(MUTATIONS, max_size=2)),
    usage_mutations=st.lists(MUTATIONS, max_size=3),
    period=st.one_of(st.sampled_from(["2026-03", "2026-06", "2026-12", "2026-01-15"]), st.sampled_from(PERIODS),
                     st.text(max_size=12)),
)
def test_rate_never_fails_with_an_internal_error(fmt: str, price: dict, changes: list, extras: bool,
                                                 twice: str | None, mutations: list[Mutation],
                                                 usage_mutations: list[Mutation], period: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-rate-"))
    try:
        text = render(contract(price, changes, extras), fmt, twice)
        (folder / f"c.{fmt}").write_bytes(mutate_bytes(text.encode("utf-8", errors="surrogatepass"), mutations))
        (folder / "u.jsonl").write_bytes(build_usage("jsonl", 5, usage_mutations))
        run(folder / f"c.{fmt}", folder / "u.jsonl", period)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_alias_bombs_and_deep_nesting_in_a_contract_are_config_errors(tmp_path: Path) -> None:
    bomb = "\n".join(["x: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"x{i}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)])
    (tmp_path / "u.jsonl").write_text("")
    for name, text in [("bomb.yaml", f"id: c1\ncustomer: acme\nmetadata:\n  {bomb.replace(chr(10), chr(10) + '  ')}\n"),
                       ("deep.yaml", "id: c1\nmetadata: " + "[" * 5000 + "]" * 5000 + "\n"),
                       ("deep.json", '{"id": "c1", "metadata": ' + "[" * 5000 + "]" * 5000 + "}")]:
        (tmp_path / name).write_text(text)
        run(tmp_path / name, tmp_path / "u.jsonl", "2026-03")
