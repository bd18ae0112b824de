#!/usr/bin/env bash
# Create .venv and install Rule Atlas with its dev extras; install a Java runtime for Spark
# (Debian's openjdk-17-jre-headless) when `java` is missing. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null) \
      || echo "error: could not install openjdk-17-jre-headless; Spark (and its tests) need java" >&2
  else
    echo "error: java missing and not root: install openjdk-17-jre-headless for Spark" >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'
