"""Rule tests: run each rule on its own test data and say pass, fail, no-data or not-runnable.

* Sigma: ``regression_tests_path`` -> ``info.yml`` (relative to the repository root) -> each
  ``regression_tests_info`` entry's ``.evtx``. ``match_count`` is a lower bound, as SigmaHQ's CI
  reads it: pass when the rule matches at least ``max(match_count, 1)`` events of every file.
* Splunk: the ``tests:`` attack_data URLs, mapped into a local copy (``--attack-data DIR``:
  the URL path after ``attack_data/master/``); pass when at least one event (or aggregated row)
  matches.
* Elastic: the rules ship no per-rule samples: ``no-data`` (``not-runnable`` with the engine's
  reason when the rule cannot run), unless the user maps samples to the rule.
* User samples (``--samples FILE``, :mod:`.samples`), for a rule of any source: each sample
  (its files read together as one stream) must make the rule fire at least once, or never when
  the sample says ``fire: false``. A rule the samples file names is tested on those samples only.

A rule that names no test data and cannot run is ``not-runnable``; one whose test data is named
but missing is ``no-data``, and the reason still says whether it would run.

A rule is run through the same :class:`~.runner.Engine` as ``hunt`` (routing, field maps,
pre-filter), so a test also checks that the rule's events reach it. When a rule matches nothing,
the detail says how many events it would match with routing off, which separates "routing
table" from "matcher" in a failure report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ruleatlas.engine.catalog import LoadedRule
from ruleatlas.engine.events import Event, ReadError
from ruleatlas.engine.runner import Engine, EngineRule, prepare
from ruleatlas.engine.samples import Sample, SamplesFile
from ruleatlas.limits import Limits
from ruleatlas.model import Rule, TestRef

STATUSES = ("pass", "fail", "no-data", "not-runnable")


@dataclass(frozen=True, slots=True)
class TestResult:
    id: str
    title: str
    source: str
    status: str
    matched: int = 0
    expected: int | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    read_errors: int = 0  # unreadable inputs or records in the data the rule ran on

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "source": self.source,
                "status": self.status, "matched": self.matched, "expected": self.expected,
                "reason": self.reason, "read_errors": self.read_errors, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class DataFile:
    path: Path
    expected: int  # minimum number of matches


# Why a rule that names no test data has none, by source (default: NO_TESTS).
NO_TESTS = "the rule names no test data"
NO_TESTS_BY_SOURCE = {"elastic": "Elastic ships no per-rule samples"}
SAMPLES_HINT = "map samples to the rule with --samples FILE"


def _read_events(paths: Sequence[Path], errors: list[ReadError],
                 limits: Limits | None = None) -> list[Event]:
    from ruleatlas.engine.readers import read_events

    return list(read_events([str(p) for p in paths], errors, limits))


def sigma_data(root: Path, t: TestRef) -> tuple[list[DataFile], str | None]:
    """The data files a Sigma regression TestRef names, or the reason there are none."""
    info = root / t.path
    if not info.is_file():
        return [], f"info.yml not found: {t.path}"
    try:
        doc = yaml.safe_load(info.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        return [], f"{t.path}: unreadable info.yml: {exc}"
    entries = (doc or {}).get("regression_tests_info") or []
    out: list[DataFile] = []
    missing: list[str] = []
    for e in entries:
        if not isinstance(e, dict) or not e.get("path"):
            continue
        p = root / str(e["path"])
        if not p.is_file():
            missing.append(str(e["path"]))
            continue
        mc = e.get("match_count")
        out.append(DataFile(p, max(int(mc) if isinstance(mc, int) else 1, 1)))
    if not out:
        return [], ("test data file not found: " + ", ".join(missing) if missing
                    else f"{t.path} names no test data file")
    return out, None


def attack_data_file(url: str, attack_data: Path | None) -> tuple[Path | None, str | None]:
    """Map an attack_data URL into a local copy of the repository."""
    if attack_data is None:
        return None, "attack_data not available locally (use --attack-data DIR)"
    marker = "attack_data/master/"
    i = url.find(marker)
    rel = url[i + len(marker):] if i >= 0 else url.split("/", 3)[-1]
    p = attack_data / rel
    if not p.is_file():
        return None, f"attack_data file not found: {p}"
    return p, None


def _files_for(lr: LoadedRule, attack_data: Path | None) -> tuple[list[DataFile], str | None]:
    rule = lr.rule
    if not rule.tests:
        return [], NO_TESTS_BY_SOURCE.get(rule.source, NO_TESTS)
    files: list[DataFile] = []
    reasons: list[str] = []
    for t in rule.tests:
        if t.kind == "sigma-regression":
            got, why = sigma_data(Path(lr.root), t)
        elif t.kind == "attack_data":
            p, why = attack_data_file(t.path, attack_data)
            # a Splunk test lists every log of the attack (sysmon, security, ...): the rule must
            # match in at least one of them, not in each
            got = [DataFile(p, 0)] if p else []
        else:
            got, why = [], f"unknown test kind {t.kind!r}"
        files.extend(got)
        if why:
            reasons.append(why)
    if not files:
        return [], "; ".join(reasons) or "no test data"
    return files, None


def _count(er: EngineRule, events: list[Event], route: bool = True) -> tuple[int, list[Any]]:
    eng = Engine([er], route=route)
    n = 0
    sample: list[Any] = []
    for f in eng.run(events):
        n += 1
        if len(sample) < 5:
            sample.append({"record_id": f.event.record_id, "matched": dict(f.matched)})
    return n, sample


def run_test(lr: LoadedRule, attack_data: Path | None = None) -> TestResult:
    rule: Rule = lr.rule
    base: dict[str, Any] = {"id": rule.id, "title": rule.title, "source": rule.source}
    files, why = _files_for(lr, attack_data)
    er = prepare(rule, lr.analysis, lr.tactics)
    if why and not rule.tests and not er.runnable:  # no data could ever help
        return TestResult(**base, status="not-runnable",
                          reason=f"not runnable: {er.reason}; {why}")
    if why and not rule.tests:
        return TestResult(**base, status="no-data", reason=f"{why} ({SAMPLES_HINT}); "
                                                           "the rule runs on events")
    if why:  # still say whether the rule would run, so its page tells both
        runs = "the rule runs on events" if er.runnable else f"not runnable: {er.reason}"
        return TestResult(**base, status="no-data", reason=f"{why}; {runs}")
    expected = max(sum(f.expected for f in files), 1)
    if not er.runnable:
        return TestResult(**base, status="not-runnable", expected=expected,
                          reason=f"not runnable: {er.reason}")
    total = 0
    bad_reads = 0
    failed: list[str] = []
    detail: dict[str, Any] = {"files": []}
    for df in files:
        errors: list[ReadError] = []
        events = _read_events([df.path], errors)
        n, sample = _count(er, events)
        total += n
        entry: dict[str, Any] = {"file": str(df.path), "events": len(events), "matched": n,
                                 "expected_at_least": df.expected, "sample": sample}
        if errors:
            entry["read_errors"] = [str(e) for e in errors[:5]]
            bad_reads += len(errors)
        if n < df.expected:
            unrouted, _ = _count(er, events, route=False)
            entry["matched_without_routing"] = unrouted
            failed.append(f"{df.path.name}: matched {n} of at least {df.expected}"
                          + (f" ({unrouted} without logsource routing)" if unrouted > n else ""))
        detail["files"].append(entry)
    if total == 0 and not failed:  # attack_data: nothing matched in any of the files
        failed.append("no finding in " + ", ".join(Path(f.path).name for f in files))
    if failed:
        return TestResult(**base, status="fail", matched=total, expected=expected,
                          reason="; ".join(failed), detail=detail, read_errors=bad_reads)
    return TestResult(**base, status="pass", matched=total, expected=expected, detail=detail,
                      read_errors=bad_reads)


@dataclass(frozen=True, slots=True)
class SampleOutcome:
    """One user sample run: ``ok`` is None when none of its files could be read."""

    sample: Sample
    events: int
    matched: int
    ok: bool | None
    errors: tuple[ReadError, ...]
    entry: dict[str, Any]
    problem: str | None = None


def _run_sample(er: EngineRule, s: Sample, limits: Limits | None) -> SampleOutcome:
    errors: list[ReadError] = []
    events = _read_events(s.files, errors, limits)
    n, shown = _count(er, events)
    entry: dict[str, Any] = {"files": [str(p) for p in s.files], "fire": s.fire,
                             "at": str(s.span) if s.span else None, "events": len(events),
                             "matched": n, "sample": shown}
    if errors:
        entry["read_errors"] = [str(e) for e in errors[:5]]
    if not events and errors:
        entry["ok"] = None
        return SampleOutcome(s, 0, 0, None, tuple(errors), entry,
                             f"{s.label()}: could not be read ({errors[0]})")
    ok = (n > 0) == s.fire
    entry["ok"] = ok
    problem = None
    if not ok and s.fire:
        unrouted, _ = _count(er, events, route=False)
        entry["matched_without_routing"] = unrouted
        problem = (f"{s.label()}: no finding in {len(events)} events, expected to fire"
                   + (f" ({unrouted} without logsource routing)" if unrouted else ""))
    elif not ok:
        problem = f"{s.label()}: {n} finding(s), expected not to fire"
    return SampleOutcome(s, len(events), n, ok, tuple(errors), entry, problem)


def run_samples(lr: LoadedRule, samples: Sequence[Sample],
                limits: Limits | None = None) -> TestResult:
    """The rule on the user's samples (``--samples``) instead of its own test data: pass when
    every readable sample behaves as it says (fires at least once, or never with ``fire:
    false``); a sample none of whose files could be read is skipped and named in the reason
    (``no-data`` when no sample could be read)."""
    rule = lr.rule
    base: dict[str, Any] = {"id": rule.id, "title": rule.title, "source": rule.source}
    er = prepare(rule, lr.analysis, lr.tactics)
    expected = sum(1 for s in samples if s.fire)
    where = next((s.span.path for s in samples if s.span and s.span.path), None)
    if not er.runnable:
        return TestResult(**base, status="not-runnable", expected=expected,
                          reason=f"not runnable: {er.reason}")
    runs = [_run_sample(er, s, limits) for s in samples]
    detail: dict[str, Any] = {"samples_file": where, "samples": [r.entry for r in runs]}
    read_errors = sum(len(r.errors) for r in runs)
    matched = sum(r.matched for r in runs)
    failed = [r.problem for r in runs if r.ok is False and r.problem]
    unread = [r.problem for r in runs if r.ok is None and r.problem]
    done = [r for r in runs if r.ok is not None]
    common: dict[str, Any] = {"matched": matched, "expected": expected, "detail": detail,
                              "read_errors": read_errors}
    if failed:
        return TestResult(**base, status="fail", reason="; ".join(failed + unread), **common)
    if not done:
        return TestResult(**base, status="no-data",
                          reason="no sample could be read: " + "; ".join(unread), **common)
    nfire = sum(1 for r in done if r.sample.fire)
    said = (f"{len(done)} sample(s) as expected ({nfire} fire, {len(done) - nfire} do not)"
            + (f"; skipped: {'; '.join(unread)}" if unread else ""))
    return TestResult(**base, status="pass", reason=said, **common)


def run_one(lr: LoadedRule, attack_data: Path | None = None,
              samples: SamplesFile | None = None, limits: Limits | None = None) -> TestResult:
    """The rule on the user's samples when ``samples`` names it, else on its own test data."""
    mine = samples.for_rule(lr.rule.id) if samples is not None else ()
    return run_samples(lr, mine, limits) if mine else run_test(lr, attack_data)


def run_tests(rules: Sequence[LoadedRule], attack_data: Path | None = None,
              progress: Callable[[LoadedRule], None] | None = None,
              samples: SamplesFile | None = None,
              limits: Limits | None = None) -> list[TestResult]:
    out = []
    for lr in rules:
        out.append(run_one(lr, attack_data, samples, limits))
        if progress:
            progress(lr)
    return out


def summary(results: Sequence[TestResult]) -> dict[str, int]:
    out = dict.fromkeys(STATUSES, 0)
    for r in results:
        out[r.status] = out.get(r.status, 0) + 1
    return out
