#!/usr/bin/env bash
# Installs the test tools hartvault's tests need into ./.tools (idempotent).
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run on its own.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools"

AZURITE_VERSION=3.37.0
if [ ! -x "$tools/node_modules/.bin/azurite-blob" ] || ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$tools/node_modules/azurite/package.json" 2>/dev/null; then
  echo "==> installing azurite $AZURITE_VERSION (npm) into .tools"
  npm install --prefix "$tools" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >/dev/null
fi
export HARTVAULT_AZURITE_BIN="$tools/node_modules/.bin/azurite-blob"

# PostgreSQL server binaries (initdb, pg_ctl, pg_dumpall, pg_amcheck, pg_waldump,
# pgbench) for the PostgreSQL engine's tests and the demo.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  echo "==> installing PostgreSQL (Debian package postgresql)"
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql postgresql-contrib >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql postgresql-contrib >/dev/null; }
  else
    echo "PostgreSQL is not installed and this is not root: install the postgresql package" >&2; exit 1
  fi
fi
