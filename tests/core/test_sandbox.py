"""The vendor-neutral sandbox framework, exercised through a tiny vendor of its own.

``NotesSandbox`` is what a CRM or ERP sandbox would look like: JSON bodies, offset and
token pagination, an API key header. Everything here is vendor-neutral; the Stripe
sandbox has its own tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from subledger.core.errors import ConfigError
from subledger.core.sandbox import (
    Call,
    Fault,
    FormError,
    Request,
    Response,
    Router,
    Sandbox,
    SandboxClock,
    SandboxError,
    SandboxServer,
    cursor_page,
    decode_token,
    encode_token,
    offset_page,
    parse_form,
    token_page,
)
from subledger.core.sandbox.forms import split_key
from subledger.core.sandbox.wire import Headers


class NotesSandbox(Sandbox):
    """A made-up vendor: notes with an owner, an API key, and idempotent creates."""

    name = "notes"

    def build_routes(self, router: Router) -> None:
        router.add("POST", "/notes", self.create)
        router.add("GET", "/notes", self.list)
        router.add("GET", "/notes/search", lambda c: {"results": []})
        router.add("GET", "/notes/{id}", lambda c: self.store.require("notes", c["id"], label="note"))

    def authenticate(self, request: Request) -> str:
        key = request.headers.get("x-api-key")
        if key != "secret-key":
            raise SandboxError(401, "bad api key", code="unauthorized")
        return key

    def idempotency_key(self, request: Request) -> str | None:
        return request.headers.get("idempotency-key") if request.method == "POST" else None

    def create(self, call: Call) -> Response:
        body = call.request.json or {}
        if not body.get("text"):
            raise SandboxError(400, "text is required", code="missing", param="text")
        note = {"id": self.store.new_id("note_", 8), "text": body["text"], "created": self.clock.now()}
        self.store.put("notes", note)
        return Response(201, note)

    def list(self, call: Call) -> dict[str, Any]:
        ordered = self.store.ordered("notes", newest_first=False)
        limit = int(call.params.get("limit", 2))
        if "offset" in call.params:
            page = offset_page(ordered, offset=int(call.params["offset"]), limit=limit)
        else:
            page = token_page(ordered, after=call.params.get("after"), limit=limit)
        return {"results": page.items, "next": page.next_token}

    def seed(self, fixture: dict[str, Any]) -> dict[str, int]:
        for text in fixture.get("notes", []):
            self.store.put("notes", {"id": self.store.new_id("note_", 8), "text": text, "created": self.clock.now()})
        return {"notes": len(fixture.get("notes", []))}


KEY = {"X-Api-Key": "secret-key"}


@pytest.fixture
def served() -> Any:
    with SandboxServer(NotesSandbox(clock=SandboxClock(frozen_at=1_700_000_000), random_seed=7)) as server:
        yield server


def client(server: SandboxServer, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=KEY, timeout=timeout)


# -- forms -------------------------------------------------------------------------------


def test_bracket_forms_nest_hashes_and_number_lists_as_stripe_encodes_them() -> None:
    body = ("customer=cus_1&items[0][price]=p1&items[1][price]=p2&items[1][quantity]=3"
            "&metadata[a]=b&expand[]=x&expand[]=y")
    assert parse_form(body) == {
        "customer": "cus_1",
        "items": [{"price": "p1"}, {"price": "p2", "quantity": "3"}],
        "metadata": {"a": "b"},
        "expand": ["x", "y"],
    }


def test_form_keeps_blank_values_which_unset_metadata() -> None:
    assert parse_form("metadata[old]=&description=") == {"metadata": {"old": ""}, "description": ""}


def test_form_refuses_a_name_used_as_value_and_hash() -> None:
    with pytest.raises(FormError) as raised:
        parse_form("a=1&a[b]=2")
    assert raised.value.param == "a[b]"
    with pytest.raises(FormError):
        split_key("a]b[")


@given(st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True),
                       st.lists(st.from_regex(r"[a-z0-9]{0,5}", fullmatch=True), min_size=1, max_size=4),
                       min_size=1, max_size=4))
def test_indexed_lists_round_trip(data: dict[str, list[str]]) -> None:
    pairs = "&".join(f"{k}[{i}]={v}" for k, values in data.items() for i, v in enumerate(values))
    assert parse_form(pairs) == data


# -- pagination --------------------------------------------------------------------------


OBJS = [{"id": f"o{i}"} for i in range(7)]


def test_cursor_pages_walk_forward_and_back_without_gaps() -> None:
    first = cursor_page(OBJS, limit=3)
    assert [o["id"] for o in first.items] == ["o0", "o1", "o2"] and first.has_more
    second = cursor_page(OBJS, limit=3, starting_after="o2")
    assert [o["id"] for o in second.items] == ["o3", "o4", "o5"] and second.has_more
    last = cursor_page(OBJS, limit=3, starting_after="o5")
    assert [o["id"] for o in last.items] == ["o6"] and not last.has_more
    back = cursor_page(OBJS, limit=2, ending_before="o3")
    assert [o["id"] for o in back.items] == ["o1", "o2"] and back.has_more
    assert not cursor_page(OBJS, limit=5, ending_before="o3").has_more


def test_cursor_errors_match_the_vendor() -> None:
    with pytest.raises(SandboxError) as missing:
        cursor_page(OBJS, limit=3, starting_after="nope", label="customer")
    assert (missing.value.status, missing.value.message) == (404, "No such customer: 'nope'")
    with pytest.raises(SandboxError) as both:
        cursor_page(OBJS, limit=3, starting_after="o1", ending_before="o4")
    assert both.value.status == 400


@given(st.integers(min_value=0, max_value=25), st.integers(min_value=1, max_value=7))
def test_token_pages_visit_every_object_once(count: int, limit: int) -> None:
    objs = [{"id": f"x{i}"} for i in range(count)]
    seen: list[str] = []
    token = None
    while True:
        page = token_page(objs, after=token, limit=limit)
        seen += [o["id"] for o in page.items]
        if not page.has_more:
            break
        token = page.next_token
    assert seen == [o["id"] for o in objs]


def test_a_tampered_token_is_a_400() -> None:
    assert decode_token(encode_token({"last": "x1"})) == {"last": "x1"}
    with pytest.raises(SandboxError) as raised:
        decode_token("!!not-a-token")
    assert raised.value.status == 400


# -- the server: routing, auth, idempotency -------------------------------------------------


def test_port_zero_picks_an_ephemeral_port_on_localhost(served: SandboxServer) -> None:
    assert served.host == "127.0.0.1" and served.port > 0
    assert served.url == f"http://127.0.0.1:{served.port}"


def test_routes_auth_and_errors(served: SandboxServer) -> None:
    with client(served) as http:
        assert http.get("/notes/search").json() == {"results": []}  # the literal route beats /notes/{id}
        missing = http.get("/notes/note_nope")
        assert missing.status_code == 404 and "No such note" in missing.json()["error"]["message"]
        assert http.delete("/notes").status_code == 405
        assert http.get("/unknown").status_code == 404
    assert httpx.get(f"{served.url}/notes").status_code == 401


def test_idempotency_key_replays_the_first_response_and_refuses_other_parameters(served: SandboxServer) -> None:
    with client(served) as http:
        first = http.post("/notes", json={"text": "hello"}, headers={"Idempotency-Key": "k1"})
        again = http.post("/notes", json={"text": "hello"}, headers={"Idempotency-Key": "k1"})
        other = http.post("/notes", json={"text": "bye"}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 400 and other.json()["error"]["code"] == "idempotency_error"
    assert len(served.sandbox.store.collection("notes")) == 1


def test_a_refused_request_is_not_saved_under_its_key(served: SandboxServer) -> None:
    with client(served) as http:
        bad = http.post("/notes", json={}, headers={"Idempotency-Key": "k2"})
        good = http.post("/notes", json={"text": "now valid"}, headers={"Idempotency-Key": "k2"})
    assert bad.status_code == 400 and good.status_code == 201


def test_saved_responses_expire_after_the_ttl(served: SandboxServer) -> None:
    with client(served) as http:
        first = http.post("/notes", json={"text": "a"}, headers={"Idempotency-Key": "k3"})
        served.sandbox.clock.advance(24 * 3600)
        later = http.post("/notes", json={"text": "a"}, headers={"Idempotency-Key": "k3"})
    assert later.json()["id"] != first.json()["id"]  # a new key life: a second note


# -- faults --------------------------------------------------------------------------------


def test_rate_limit_fault_answers_429_with_retry_after_then_clears(served: SandboxServer) -> None:
    served.sandbox.faults.inject("rate_limit", path="/notes", retry_after=7, times=2)
    with client(served) as http:
        statuses = [http.get("/notes").status_code for _ in range(3)]
        limited = served.sandbox.exchanges[0].response
    assert statuses == [429, 429, 200]
    assert limited is not None and limited.headers["Retry-After"] == "7"


def test_skip_lets_matching_requests_through_first(served: SandboxServer) -> None:
    served.sandbox.faults.inject("server_error", method="GET", path="/notes*", skip=1, status=503)
    with client(served) as http:
        assert [http.get("/notes").status_code for _ in range(3)] == [200, 503, 200]


def test_drop_after_write_commits_but_never_answers(served: SandboxServer) -> None:
    served.sandbox.faults.inject("drop", method="POST", path="/notes")
    with client(served) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/notes", json={"text": "lost answer"})
    assert [n["text"] for n in served.sandbox.store.collection("notes").values()] == ["lost answer"]
    assert served.sandbox.exchanges[-1].action == "drop"


def test_drop_before_write_changes_nothing(served: SandboxServer) -> None:
    served.sandbox.faults.inject("drop", method="POST", phase="before")
    with client(served) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/notes", json={"text": "never"})
    assert served.sandbox.store.collection("notes") == {}


def test_timeout_after_write_holds_the_request_until_the_client_gives_up(served: SandboxServer) -> None:
    served.sandbox.faults.inject("timeout", method="POST", phase="after", seconds=5)
    started = time.monotonic()
    with client(served, timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/notes", json={"text": "slow"})
    assert time.monotonic() - started < 2
    assert len(served.sandbox.store.collection("notes")) == 1


def test_server_error_after_commit_returns_500_yet_the_write_landed(served: SandboxServer) -> None:
    served.sandbox.faults.inject("server_error", method="POST", phase="after")
    with client(served) as http:
        assert http.post("/notes", json={"text": "x"}).status_code == 500
    assert len(served.sandbox.store.collection("notes")) == 1


def test_fault_rules_validate_their_fields() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(kind="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="before"):
        Fault(kind="rate_limit", phase="after")
    with pytest.raises(ValueError, match="unknown fault fields"):
        Fault.from_dict({"kind": "drop", "colour": "red"})


# A client in its own process: it waits for a line on stdin, then posts one note.
CLIENT = """
import sys, urllib.request
sys.stdin.readline()
req = urllib.request.Request(sys.argv[1] + "/notes", data=b'{"text": "from a doomed client"}', method="POST",
                             headers={"X-Api-Key": "secret-key", "Content-Type": "application/json"})
try:
    urllib.request.urlopen(req, timeout=10)
except Exception as exc:
    sys.exit(f"still alive after the kill: {exc!r}")
sys.exit("still alive, and answered")
"""


def _doomed_client(server: SandboxServer) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CLIENT, server.url], stdin=subprocess.PIPE, text=True)


@pytest.mark.parametrize(("phase", "notes"), [("before", 0), ("after", 1)])
def test_kill_fault_kills_the_client_process_before_or_after_its_write_committed(
    served: SandboxServer, phase: str, notes: int
) -> None:
    client = _doomed_client(served)
    try:
        fault = served.sandbox.faults.inject("kill", method="POST", path="/notes", pid=client.pid, phase=phase)
        assert client.stdin is not None
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.wait(timeout=20) == -signal.SIGKILL
    finally:
        client.kill()
    assert fault.spent and len(served.sandbox.store.collection("notes")) == notes
    [exchange] = list(served.sandbox.exchanges)
    assert (exchange.action, exchange.tags["killed"], exchange.fault) == ("drop", client.pid, fault)


def test_kill_fault_from_the_control_endpoint_and_its_validation(served: SandboxServer) -> None:
    client = _doomed_client(served)
    try:
        added = _control(served, "POST", "/faults", {"kind": "kill", "pid": client.pid, "phase": "after"})
        rule = added["faults"][0]
        assert (rule["kind"], rule["pid"], rule["signal"], rule["phase"]) == (
            "kill", client.pid, signal.SIGKILL, "after")
        assert client.stdin is not None
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.wait(timeout=20) == -signal.SIGKILL
    finally:
        client.kill()
    assert len(served.sandbox.store.collection("notes")) == 1
    with pytest.raises(ValueError, match="needs the pid"):
        Fault(kind="kill")
    with pytest.raises(ValueError, match="own process"):
        Fault(kind="kill", pid=os.getpid())
    with pytest.raises(ValueError, match="only a kill fault takes a pid"):
        Fault(kind="drop", pid=client.pid)
    assert _control(served, "POST", "/faults", {"kind": "kill"})["status"] == 400


def test_a_kill_fault_whose_process_is_gone_still_drops_the_connection(served: SandboxServer) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=20)
    served.sandbox.faults.inject("kill", method="POST", pid=gone.pid)
    with client(served) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/notes", json={"text": "never"})
    assert served.sandbox.exchanges[-1].tags["killed"] is None
    assert served.sandbox.store.collection("notes") == {}


def test_stopping_releases_a_held_request_and_frees_the_port() -> None:
    server = SandboxServer(NotesSandbox()).start()
    server.sandbox.faults.inject("timeout", seconds=60)
    port = server.port
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /notes HTTP/1.1\r\nHost: x\r\nX-Api-Key: secret-key\r\n\r\n")
        time.sleep(0.1)
        started = time.monotonic()
        server.stop()
        sock.settimeout(3)
        assert sock.recv(100) == b""  # closed without an answer
    assert time.monotonic() - started < 3
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5)


# -- control endpoints (for a sandbox in another process) ------------------------------------


def _control(server: SandboxServer, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{server.url}/_sandbox{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return {"status": err.code, **json.loads(err.read())}


def test_control_endpoints_drive_faults_clock_seed_and_inspection(served: SandboxServer) -> None:
    assert _control(served, "GET", "/health") == {"ok": True, "sandbox": "notes", "time": 1_700_000_000}
    assert _control(served, "POST", "/seed", {"notes": ["a", "b", "c"]}) == {"created": {"notes": 3}}
    added = _control(served, "POST", "/faults", [{"kind": "rate_limit", "path": "/notes", "retry_after": 2}])
    assert added["faults"][0]["kind"] == "rate_limit"
    with client(served) as http:
        assert http.get("/notes").status_code == 429
        page1 = http.get("/notes", params={"limit": 2}).json()
        page2 = http.get("/notes", params={"limit": 2, "after": page1["next"]}).json()
        offset = http.get("/notes", params={"limit": 2, "offset": 2}).json()
    assert [n["text"] for n in page1["results"] + page2["results"]] == ["a", "b", "c"]
    assert [n["text"] for n in offset["results"]] == ["c"] and offset["next"] is None
    assert _control(served, "POST", "/clock", {"advance": 60})["time"] == 1_700_000_060
    assert _control(served, "GET", "/counts") == {"notes": 3}
    log = _control(served, "GET", "/requests")["requests"]
    assert [(r["path"], r["status"], r["fault"]) for r in log][:1] == [("/notes", 429, "rate_limit")]
    assert _control(served, "POST", "/faults", {"kind": "boom"})["status"] == 400
    _control(served, "POST", "/reset", {})
    assert _control(served, "GET", "/counts") == {}


def test_a_handler_bug_is_a_500_and_the_server_keeps_serving(served: SandboxServer) -> None:
    served.sandbox.router.add("GET", "/crash", lambda c: 1 / 0)
    with client(served) as http:
        assert http.get("/crash").status_code == 500
        assert http.get("/notes").status_code == 200


# -- clock and fixtures ----------------------------------------------------------------------


def test_clock_freezes_advances_and_resumes() -> None:
    clock = SandboxClock(frozen_at=100)
    clock.advance(50)
    assert clock.now() == 150
    clock.unfreeze()
    time.sleep(0.01)
    assert 150 <= clock.time() < 151
    clock.set(10_000)
    assert 10_000 <= clock.now() < 10_001


def test_fixture_files_load_as_json_or_yaml_and_errors_name_the_file(tmp_path: Any) -> None:
    (tmp_path / "seed.yaml").write_text("notes: [one, two]\n")
    assert NotesSandbox(fixture=tmp_path / "seed.yaml").store.counts() == {"notes": 2}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json:1:2: not valid JSON"):
        NotesSandbox(fixture=tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="does not exist"):
        NotesSandbox(fixture=tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        NotesSandbox(fixture=tmp_path / "list.yaml")


def test_headers_are_case_insensitive() -> None:
    headers = Headers({"Content-Type": "application/json"})
    assert headers["content-type"] == headers.get("CONTENT-TYPE") == "application/json"
    assert "Content-type" in headers
