"""Helpers shared by the web and browser tests: a hostile catalog, a real server on a free port.

The hostile repositories are tiny hand-written Sigma and Splunk trees whose every text field tries
to inject markup or script; they go through the real build (``ruleatlas.build.build``) so the
pages render what the pipeline really stores.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

HOSTILE_SIGMA_ID = "11111111-1111-4111-8111-111111111111"
HOSTILE_SPLUNK_ID = "22222222-2222-4222-8222-222222222222"
XSS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
)

HOSTILE_SIGMA = """\
title: '<script>alert(1)</script> Hostile "><img src=x onerror=alert(1)>'
id: 11111111-1111-4111-8111-111111111111
status: test
description: '"><img src=x onerror=alert(1)> and <script>alert(1)</script> in a description'
references:
    - 'javascript:alert(1)'
    - 'JaVaScRiPt:alert(1)'
    - 'https://example.com/ok?a=1&b=<script>'
    - 'https://example.com/fine'
author: '<b onmouseover=alert(1)>author</b>'
date: 2024-01-01
tags:
    - attack.execution
    - attack.t1047
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        CommandLine|contains: '<script>alert(1)</script>'
        Image|endswith: '"><img src=x onerror=alert(1)>'
    filter:
        ParentImage: 'javascript:alert(1)'
    condition: selection and not filter
falsepositives:
    - '<iframe src=javascript:alert(1)></iframe>'
level: high
"""

HOSTILE_SPLUNK = """\
name: '<svg onload=alert(1)> Hostile Splunk'
id: 22222222-2222-4222-8222-222222222222
version: 1
date: '2024-01-01'
author: '<script>alert(1)</script>'
status: production
type: TTP
description: '"><img src=x onerror=alert(1)> splunk description'
data_source:
    - '<script>alert(1)</script> source'
search: '`sysmon` EventCode=1 process_name="<script>alert(1)</script>"
    CommandLine="*\\"><img src=x onerror=alert(1)>*" | stats count by dest | `hostile_filter`'
how_to_implement: '<img src=x onerror=alert(1)>'
known_false_positives: '<script>alert(1)</script>'
references:
    - 'javascript:alert(1)'
    - ' javascript:alert(1)'
    - 'data:text/html,<script>alert(1)</script>'
tags:
    analytic_story:
        - '<script>alert(1)</script> story'
    asset_type: Endpoint
    mitre_attack_id:
        - T1047
    product:
        - Splunk Enterprise
    security_domain: endpoint
tests:
    - name: '<script>alert(1)</script>'
      attack_data:
          - data: 'javascript:alert(1)'
            source: XmlWinEventLog:Microsoft-Windows-Sysmon/Operational
            sourcetype: XmlWinEventLog
"""

HOSTILE_MACROS = {
    "sysmon.yml": "definition: sourcetype=XmlWinEventLog:Microsoft-Windows-Sysmon/Operational\n"
    "description: '<script>alert(1)</script>'\nname: sysmon\n",
    "hostile_filter.yml": "definition: search *\ndescription: filter\nname: hostile_filter\n",
}
HOSTILE_STORY = """\
name: '<script>alert(1)</script> story'
id: 33333333-3333-4333-8333-333333333333
version: 1
date: '2024-01-01'
author: x
description: '"><img src=x onerror=alert(1)>'
narrative: '<script>alert(1)</script>'
references:
    - 'javascript:alert(1)'
tags:
    analytic_story: '<script>alert(1)</script> story'
    category:
        - Adversary Tactics
    product:
        - Splunk Enterprise
    usecase: Advanced Threat Detection
"""


def make_hostile_repos(base: Path) -> list[Path]:
    """A Sigma and a Splunk repository full of markup, written under ``base``."""
    sigma = base / "sigma"
    (sigma / "rules" / "windows").mkdir(parents=True)
    (sigma / "rules" / "windows" / "hostile.yml").write_text(HOSTILE_SIGMA)
    splunk = base / "security_content"
    (splunk / "detections" / "endpoint").mkdir(parents=True)
    (splunk / "detections" / "endpoint" / "hostile.yml").write_text(HOSTILE_SPLUNK)
    (splunk / "macros").mkdir()
    for name, text in HOSTILE_MACROS.items():
        (splunk / "macros" / name).write_text(text)
    (splunk / "stories").mkdir()
    (splunk / "stories" / "hostile.yml").write_text(HOSTILE_STORY)
    return [sigma, splunk]


def build_catalog(repos: list[Path], db: Path) -> Path:
    """Build with the real pipeline (``ruleatlas.build.build``)."""
    from ruleatlas.build import build

    build(repos, db)
    return db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(db: Path, timeout: float = 30.0) -> Iterator[str]:
    """``ruleatlas serve`` in a subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from ruleatlas.cli import main; main()", "serve", "--db",
         str(db), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"server exited with {proc.returncode}: {out}")
            try:
                if httpx.get(base + "/api/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
