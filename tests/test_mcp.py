"""``ruleatlas mcp``: the MCP server driven by the official SDK's client.

One real session over stdio (``python -m ruleatlas.cli mcp --db <whole corpus catalog>``) calls
every tool once and the bad inputs; the tests below read its answers. Expectations come from
the rules themselves: the example Splunk rule 0734bd21 (README) writes
``ScriptBlockText IN ("*invoke-wmiexec*")``, which the Sigma rule "Malicious PowerShell
Commandlets - ScriptBlock" also holds (as ``contains Invoke-WMIExec``); the Sigma rule 49d9671b
(``Image|endswith: \\WMIC.exe`` or ``OriginalFileName: wmic.exe``, and ``CommandLine|contains|
all: call, terminate``) has a one-event regression EVTX whose event (record 74989, host
swachchhanda, ``WMIC.exe process where ... call terminate``) it must find.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult

from conftest import EXAMPLE_ID, ROOT, SIGMA

slow = pytest.mark.slow  # reads the whole corpus catalog (corpus_db)

WMIC_ID = "49d9671b-0a0a-4c09-8280-d215bfd30662"
WMIC_EVTX = (SIGMA / "regression_data/rules/windows/process_creation/"
             "proc_creation_win_wmic_terminate_application" / f"{WMIC_ID}.evtx")
TWIN_ID = "89819aa4-bbd6-46bc-88ec-c7f7fe30efa6"
TWIN_TITLE = "Malicious PowerShell Commandlets - ScriptBlock"

# name -> (tool, arguments): every tool once, then inputs that must give error results.
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "search": ("search_rules", {"query": "wmiexec"}),
    "search_filtered": ("search_rules", {"query": "wmiexec", "source": "splunk", "limit": 5}),
    "rule": ("get_rule", {"rule": EXAMPLE_ID}),
    "rule_prefix": ("get_rule", {"rule": "0734bd21"}),
    "indicator_text": ("lookup_indicator", {"text": 'ScriptBlockText in "*invoke-wmiexec*"'}),
    "indicator_parts": ("lookup_indicator",
                        {"field": "ScriptBlockText", "op": "contains", "value": "Invoke-WMIExec"}),
    "similar": ("similar_rules", {"rule": EXAMPLE_ID, "limit": 5}),
    "attack": ("attack_coverage", {}),
    "attack_execution": ("attack_coverage", {"tactic": "Execution"}),
    "attack_lateral": ("attack_coverage", {"tactic": "lateral-movement"}),
    "events": ("data_source_coverage", {}),
    "hunt": ("hunt_file", {"path": str(WMIC_EVTX), "rules": "sigma"}),
    "bad_unknown_rule": ("get_rule", {"rule": "no-such-rule-anywhere"}),
    "bad_long_rule": ("get_rule", {"rule": "x" * 50_000}),
    "bad_long_similar": ("similar_rules", {"rule": "0734bd21" * 6_250}),
    "bad_missing_file": ("hunt_file", {"path": str(ROOT / "no-such-log.evtx")}),
    "bad_folder": ("hunt_file", {"path": str(WMIC_EVTX.parent)}),
    "bad_indicator": ("lookup_indicator", {"field": "ScriptBlockText"}),
    "bad_operator": ("lookup_indicator", {"text": "ScriptBlockText frobs x"}),
    "bad_limit": ("search_rules", {"query": "wmiexec", "limit": 100_000}),
    "bad_tactic": ("attack_coverage", {"tactic": "teleportation"}),
    "bad_control": ("search_rules", {"query": "wmi\x00exec"}),
    "after_errors": ("search_rules", {"query": "mimikatz", "limit": 3}),
}


def _env() -> dict[str, str]:
    """The test's environment with this checkout's sources first (the SDK passes only a few
    variables to the child by default)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        x for x in (str(ROOT / "src"), env.get("PYTHONPATH")) if x)
    return env


Session = Callable[[ClientSession], Awaitable[Any]]


async def _over_stdio(db: Path, fn: Session) -> Any:
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "ruleatlas.cli", "mcp", "--db", str(db)],
                                   env=_env(), cwd=str(ROOT))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await fn(session)


@pytest.fixture(scope="module")
def answers(corpus_db: Path) -> dict[str, Any]:
    """The tool list and every call's result, from one stdio session."""

    async def run(session: ClientSession) -> dict[str, Any]:
        out: dict[str, Any] = {"tools": (await session.list_tools()).tools}
        for key, (tool, args) in CALLS.items():
            out[key] = await session.call_tool(tool, args)
        return out

    return anyio.run(_over_stdio, corpus_db, run)  # type: ignore[no-any-return]


def _ok(r: CallToolResult) -> dict[str, Any]:
    assert not r.is_error, r.content
    assert r.structured_content is not None
    return r.structured_content


def _error(r: CallToolResult) -> str:
    assert r.is_error, r.structured_content
    text = "".join(getattr(c, "text", "") for c in r.content)
    assert text
    return text


@slow
def test_lists_exactly_the_seven_read_only_tools(answers: dict[str, Any]) -> None:
    tools = answers["tools"]
    assert {t.name for t in tools} == {
        "search_rules", "get_rule", "lookup_indicator", "similar_rules", "attack_coverage",
        "data_source_coverage", "hunt_file"}
    for t in tools:
        assert t.annotations is not None and t.annotations.read_only_hint is True, t.name
        assert t.output_schema is not None and t.output_schema["type"] == "object", t.name
        assert t.description, t.name
    rule = next(t for t in tools if t.name == "get_rule")
    assert rule.input_schema["properties"]["rule"]["type"] == "string"


@slow
def test_search_finds_the_example_rule(answers: dict[str, Any]) -> None:
    d = _ok(answers["search"])
    ids = [r["id"] for r in d["rules"]]
    assert EXAMPLE_ID in ids
    hit = d["rules"][ids.index(EXAMPLE_ID)]
    assert hit["title"] == "PowerShell Invoke WmiExec Usage"
    assert hit["source"] == "splunk"
    assert d["returned"] == len(d["rules"]) <= 20 and d["total"] >= d["returned"]
    assert any("[" in (r["snippet"] or "") for r in d["rules"])  # matched words marked
    f = _ok(answers["search_filtered"])
    assert f["rules"] and {r["source"] for r in f["rules"]} == {"splunk"}
    assert len(f["rules"]) <= 5


@slow
def test_get_rule_has_stages_and_the_wmiexec_indicator(answers: dict[str, Any]) -> None:
    doc = _ok(answers["rule"])["rule"]
    assert doc["id"] == EXAMPLE_ID and doc["source"] == "splunk"
    assert doc["stages"] and doc["stages"][0]["predicates"]
    ind = next(i for i in doc["indicators"] if i["field"] == "ScriptBlockText")
    assert ind["op"] == "in" and not ind["negated"]
    (v,) = ind["values"]
    assert v["key"] == "*invoke-wmiexec*"
    assert v["corpus"] == {"total": 2, "elastic": 0, "sigma": 1, "splunk": 1}
    assert "T1047" in [a["technique"] for a in doc["attack"]]
    assert _ok(answers["rule_prefix"])["rule"]["id"] == EXAMPLE_ID


@slow
def test_lookup_indicator_across_vendors(answers: dict[str, Any]) -> None:
    for key in ("indicator_text", "indicator_parts"):
        d = _ok(answers[key])
        assert d["field_key"] == "ScriptBlockText" and d["key"] == "*invoke-wmiexec*"
        assert d["by_source"] == {"sigma": 1, "splunk": 1} and d["total"] == 2
        assert {(r["id"], r["source"]) for r in d["rules"]} == {
            (EXAMPLE_ID, "splunk"), (TWIN_ID, "sigma")}


@slow
def test_similar_rules_ranks_the_sigma_twin_first(answers: dict[str, Any]) -> None:
    d = _ok(answers["similar"])
    assert d["rule"] == EXAMPLE_ID
    first = d["similar"][0]
    assert (first["title"], first["id"], first["source"]) == (TWIN_TITLE, TWIN_ID, "sigma")
    assert [s["key"] for s in first["shared"]] == ["*invoke-wmiexec*"]
    assert len(d["similar"]) <= 5


@slow
def test_attack_coverage_includes_wmi(answers: dict[str, Any]) -> None:
    d = _ok(answers["attack"])
    rows = {t["technique"]: t for t in d["techniques"]}
    wmi = rows["T1047"]
    assert wmi["name"] == "Windows Management Instrumentation"
    assert wmi["tactics"] == ["execution"]
    assert wmi["by_source"]["sigma"] > 0 and wmi["by_source"]["splunk"] > 0
    assert wmi["total"] == sum(wmi["by_source"].values())
    execution = _ok(answers["attack_execution"])
    assert execution["tactic"] == "execution"
    assert "T1047" in {t["technique"] for t in execution["techniques"]}
    lateral = {t["technique"] for t in _ok(answers["attack_lateral"])["techniques"]}
    assert "T1021.002" in lateral and "T1047" not in lateral


@slow
def test_data_source_coverage_includes_powershell_4104(answers: dict[str, Any]) -> None:
    d = _ok(answers["events"])
    ps = [e for e in d["events"]
          if (e["channel"], e["event_id"]) == ("Microsoft-Windows-PowerShell/Operational", "4104")]
    assert len(ps) == 1
    assert ps[0]["by_source"]["sigma"] > 0 and ps[0]["by_source"]["splunk"] > 0
    assert d["total_events"] >= len(d["events"]) > 0
    assert d["data_sources"] and d["total_data_sources"] >= len(d["data_sources"])


@slow
def test_hunt_file_finds_the_regression_event(answers: dict[str, Any]) -> None:
    d = _ok(answers["hunt"])
    assert d["events"] == 1 and d["read_errors_total"] == 0
    mine = [f for f in d["findings"] if f["rule_id"] == WMIC_ID]
    assert len(mine) == 1
    f = mine[0]
    assert f["source"] == "sigma" and f["record_id"] == 74989 and f["host"] == "swachchhanda"
    assert f["matched"]["Image"].lower().endswith("\\wmic.exe")
    assert "call terminate" in f["matched"]["CommandLine"]
    assert f["file"] == str(WMIC_EVTX)
    assert {f["source"] for f in d["findings"]} == {"sigma"}  # rules="sigma"
    assert d["rules_run"] > 3000 and d["findings_total"] == len(d["findings"])
    assert any(r["rule_id"] == WMIC_ID and r["findings"] == 1 for r in d["by_rule"])


@pytest.mark.parametrize(("key", "message"), [
    ("bad_unknown_rule", "no rule with id, id prefix or title 'no-such-rule-anywhere'"),
    ("bad_long_rule", "rule is too long (50000 characters; max 512)"),
    ("bad_long_similar", "rule is too long (50000 characters; max 512)"),
    ("bad_missing_file", "no such file"),
    ("bad_folder", "not a regular file"),
    ("bad_indicator", "missing: op, value"),
    ("bad_operator", "unknown operator"),
    ("bad_limit", "less than or equal to 200"),
    ("bad_tactic", "unknown tactic 'teleportation'"),
    ("bad_control", "query contains control characters"),
])
@slow
def test_bad_input_is_an_error_result(answers: dict[str, Any], key: str, message: str) -> None:
    assert message in _error(answers[key])


@slow
def test_server_keeps_answering_after_errors(answers: dict[str, Any]) -> None:
    d = _ok(answers["after_errors"])
    assert d["returned"] == 3 and all("mimikatz" in (r["title"] + (r["snippet"] or "")).lower()
                                      for r in d["rules"])


# ------------------------------------------------------------------------------ in process


@slow
def test_query_time_limit_stops_a_slow_search(corpus_db: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from ruleatlas.mcp import server

    atlas = server.Atlas(corpus_db)
    monkeypatch.setattr(server, "LIMITS", server.Limits(query_seconds=0.0))
    with pytest.raises(ToolError, match="took longer than 0 s"):
        atlas.search_rules("process", limit=200)


@slow
def test_long_document_text_is_cut(corpus_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ruleatlas.mcp import server

    atlas = server.Atlas(corpus_db)
    monkeypatch.setattr(server, "LIMITS", server.Limits(document_text=50))
    r = atlas.get_rule(EXAMPLE_ID)
    for key in ("body", "query", "description", "how_to_implement", "stages[0].text"):
        assert key in r.truncated, key
    assert len(r.rule["body"]) == 50 and r.rule["body"].startswith("name: PowerShell Invoke")
    assert r.rule["id"] == EXAMPLE_ID and "id" not in r.truncated  # 36 characters: kept

    def longest(v: Any) -> int:
        if isinstance(v, dict):
            return max((longest(x) for x in v.values()), default=0)
        if isinstance(v, list):
            return max((longest(x) for x in v), default=0)
        return len(v) if isinstance(v, str) else 0

    assert longest(r.rule) == 50


@slow
def test_hunt_root_confines_hunt_file(corpus_db: Path, tmp_path: Path) -> None:
    from ruleatlas.mcp.server import Atlas

    atlas = Atlas(corpus_db, hunt_roots=(tmp_path,))
    with pytest.raises(ToolError, match="outside the folders this server may read"):
        atlas.hunt_file(str(WMIC_EVTX))


@slow
def test_unreadable_log_is_an_error(corpus_db: Path, tmp_path: Path) -> None:
    from ruleatlas.mcp.server import Atlas

    junk = tmp_path / "junk.evtx"
    junk.write_bytes(b"\x00not a log\xff" * 100)
    with pytest.raises(ToolError, match="nothing could be read from"):
        Atlas(corpus_db).hunt_file(str(junk), rules=WMIC_ID)


def test_cli_refuses_a_missing_catalog(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "ruleatlas.cli", "mcp", "--db",
                        str(tmp_path / "none.db")], env=_env(), capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 2
    assert "no catalog at" in p.stderr and p.stdout == ""


# ------------------------------------------------------------------------------ HTTP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port} after {seconds} s")


@slow
def test_streamable_http_transport(corpus_db: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ruleatlas.cli", "mcp", "--db", str(corpus_db),
         "--transport", "http", "--port", str(port)],
        env=_env(), cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)

    async def call() -> CallToolResult:
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            return await session.call_tool("get_rule", {"rule": "0734bd21"})

    try:
        _wait_for_port(port, proc)
        result = anyio.run(call)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 or proc.returncode == -15
    assert _ok(result)["rule"]["title"] == "PowerShell Invoke WmiExec Usage"
    assert proc.stdout is not None and proc.stdout.read() == b""


def test_docs_name_the_command_options_tools_arguments_and_limits() -> None:
    """House rule 10: docs/mcp.md names the command, its options, every tool with each of its
    arguments, and every limit."""
    import dataclasses
    import inspect

    import typer.main

    from ruleatlas.cli import app
    from ruleatlas.mcp import TOOLS, Atlas, Limits

    docs = (ROOT / "docs" / "mcp.md").read_text()
    assert "`ruleatlas mcp" in docs
    cmd = typer.main.get_command(app).commands["mcp"]  # type: ignore[attr-defined]
    for p in cmd.params:
        for opt in getattr(p, "opts", ()):
            if opt.startswith("--") and opt != "--help":
                assert opt in docs, opt
    for name in TOOLS:
        assert f"| `{name}` |" in docs, name
        row = next(line for line in docs.splitlines() if line.startswith(f"| `{name}` |"))
        for arg in inspect.signature(getattr(Atlas, name)).parameters:
            if arg != "self":
                assert f"`{arg}" in row, f"{name}({arg})"
    defaults = Limits()
    for f in dataclasses.fields(Limits):
        v = getattr(defaults, f.name)
        shown = {"hunt_file_bytes": "2 GiB", "query_seconds": "5 s"}.get(f.name, f"{v:,}")
        assert shown in docs, f"{f.name} = {shown}"
