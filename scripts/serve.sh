#!/usr/bin/env bash
# The main job: install Rule Atlas, build the catalog from the Sigma and Splunk corpora, serve it.
#   bash scripts/serve.sh [SIGMA_DIR] [SPLUNK_DIR]    (defaults: ../shared/corpus/...)
# Environment: RULEATLAS_DB (default ./ruleatlas.db), HOST (127.0.0.1), PORT (8000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SIGMA=${1:-../shared/corpus/sigma}
SPLUNK=${2:-../shared/corpus/security_content}
DB=${RULEATLAS_DB:-ruleatlas.db}
.venv/bin/ruleatlas build --db "$DB" "$SIGMA" "$SPLUNK"
exec .venv/bin/ruleatlas serve --db "$DB" --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
