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
