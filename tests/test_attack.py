"""ATT&CK reference data: offline lookup wheel and a user's STIX bundle."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ruleatlas import attack
from ruleatlas.attack import UNKNOWN_NAME, AttackData


def test_t1047_named_with_execution():
    t = attack.technique("T1047")
    assert t.known and t.name == "Windows Management Instrumentation"
    assert t.tactics == ("execution",)
    assert t.url == "https://attack.mitre.org/techniques/T1047"
    assert t.to_dict()["technique"] == "T1047"


def test_subtechnique_parent_and_case():
    t = attack.technique("attack.t1059.001")
    assert t.id == "T1059.001" and t.name == "PowerShell" and t.parent == "T1059"
    assert t.is_subtechnique and "execution" in t.tactics


def test_revoked_flagged_with_replacement():
    t = attack.technique("T1002")
    assert t.known and t.revoked and t.name == "Data Compressed"
    assert t.revoked_by == "T1560"


def test_deprecated_flagged():
    dep = [t for t in attack.default().all_techniques() if t.deprecated]
    assert dep and all(t.known for t in dep)


def test_unknown_id_kept():
    t = attack.technique("T9999.001")
    assert not t.known and t.name == UNKNOWN_NAME and t.id == "T9999.001"
    assert t.parent == "T9999" and t.tactics == ()


def test_tactics_in_matrix_order():
    tac = attack.default().tactics()
    assert tac[0].shortname == "reconnaissance"
    assert tac[-1].shortname == "impact" and len(tac) == 14
    assert attack.default().tactic("Lateral Movement").id == "TA0008"
    assert attack.default().tactic("TA0002").shortname == "execution"


def test_every_technique_tactic_is_known():
    data = attack.default()
    shorts = {t.shortname for t in data.tactics()}
    techs = data.all_techniques()
    assert len(techs) > 600
    for t in techs:
        if not t.revoked and not t.deprecated:
            assert t.tactics and set(t.tactics) <= shorts, t.id


def test_default_is_cached_and_fast():
    attack.default.cache_clear()
    t0 = time.perf_counter()
    a = attack.default()
    assert time.perf_counter() - t0 < 1.0
    assert attack.default() is a


def _bundle(tmp_path: Path) -> Path:
    def ref(eid: str, kind: str = "techniques") -> list[dict]:
        return [{"source_name": "mitre-attack", "external_id": eid,
                 "url": f"https://attack.mitre.org/{kind}/{eid}"}]

    objects = [
        {"type": "x-mitre-collection", "id": "x-mitre-collection--1", "x_mitre_version": "99.0"},
        {"type": "x-mitre-tactic", "id": "x-mitre-tactic--exe", "name": "Execution",
         "x_mitre_shortname": "execution", "external_references": ref("TA0002", "tactics")},
        {"type": "x-mitre-tactic", "id": "x-mitre-tactic--rec", "name": "Reconnaissance",
         "x_mitre_shortname": "reconnaissance",
         "external_references": ref("TA0043", "tactics")},
        {"type": "x-mitre-matrix", "id": "x-mitre-matrix--1",
         "tactic_refs": ["x-mitre-tactic--rec", "x-mitre-tactic--exe"]},
        {"type": "attack-pattern", "id": "attack-pattern--new", "name": "New Thing",
         "external_references": ref("T1999"),
         "kill_chain_phases": [{"kill_chain_name": "mitre-attack", "phase_name": "execution"}]},
        {"type": "attack-pattern", "id": "attack-pattern--old", "name": "Old Thing",
         "revoked": True, "external_references": ref("T1998"), "kill_chain_phases": []},
        {"type": "relationship", "id": "relationship--1", "relationship_type": "revoked-by",
         "source_ref": "attack-pattern--old", "target_ref": "attack-pattern--new"},
    ]
    p = tmp_path / "enterprise-attack.json"
    p.write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": objects}))
    return p


def test_from_stix_bundle(tmp_path: Path):
    data = AttackData.from_stix(_bundle(tmp_path))
    assert data.version == "99.0"
    t = data.technique("T1999")
    assert t.known and t.name == "New Thing" and t.tactics == ("execution",)
    old = data.technique("t1998")
    assert old.revoked and old.revoked_by == "T1999"
    assert [x.shortname for x in data.tactics()] == ["reconnaissance", "execution"]
    assert not data.technique("T1047").known
    assert attack.load(str(_bundle(tmp_path))).technique("T1999").known
