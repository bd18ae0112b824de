#!/usr/bin/env bash
# The main job: install Rule Atlas, build the catalog from the Sigma, Splunk and Elastic corpora,
# run each rule's test, serve it.
#   bash scripts/serve.sh [SIGMA_DIR] [SPLUNK_DIR] [ELASTIC_DIR]    (defaults: ../shared/corpus/...)
# Environment: RULEATLAS_DB (default ./ruleatlas.db), HOST (127.0.0.1), PORT (8000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SIGMA=${1:-../shared/corpus/sigma}
SPLUNK=${2:-../shared/corpus/security_content}
ELASTIC=${3:-../shared/corpus/elastic}
DB=${RULEATLAS_DB:-ruleatlas.db}
# Exit code 1: some rule files are load errors (the Sigma and Elastic corpora have a few): go on.
# 2: nothing could be read: stop.
rc=0
.venv/bin/ruleatlas build --db "$DB" "$SIGMA" "$SPLUNK" "$ELASTIC" || rc=$?
if [ "$rc" -ge 2 ]; then
  echo "error: the build could not read the rule repositories (exit code $rc)" >&2
  exit "$rc"
fi
# Each rule's test on its own data (Sigma regression EVTX; Splunk needs --attack-data): the
# results are stored in the catalog and shown on the rule pages (about 6 s).
.venv/bin/ruleatlas test --db "$DB" --all --format json > /dev/null \
  || echo "warning: some rule tests failed; see the test filter of the web catalog" >&2
exec .venv/bin/ruleatlas serve --db "$DB" --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
