#!/usr/bin/env bash
# The test command: install everything the tests need (Python packages, Debian's Chromium for the
# browser tests), lint and type-check, then run pytest against the shared corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  # The browser tests need Debian's Chromium; without it they fail (they never skip).
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "error: chromium is missing and this is not root: apt-get install chromium" >&2
    exit 2
  fi
fi
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
