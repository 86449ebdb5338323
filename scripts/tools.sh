#!/usr/bin/env bash
# Installs what hartvault's tests and demo need (idempotent): Azurite from npm into
# ./.tools, and, as root, the Debian packages for PostgreSQL, promtool, Chromium, Java
# and Maven; then builds the Neo4j test server launcher. Sourced by scripts/test.sh
# and scripts/demo.sh; safe to run on its own.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools"

apt_install() { # apt_install WHAT PACKAGE...
  local what="$1"; shift
  echo "==> installing $what (Debian packages $*)"
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
  else
    echo "$what is not installed and this is not root: install the Debian packages $*" >&2; exit 1
  fi
}

# Azurite, the Azure Blob emulator every storage and end-to-end test also runs against.
AZURITE_VERSION=3.37.0
if [ ! -x "$tools/node_modules/.bin/azurite-blob" ] || ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$tools/node_modules/azurite/package.json" 2>/dev/null; then
  echo "==> installing azurite $AZURITE_VERSION (npm) into .tools"
  npm install --prefix "$tools" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >/dev/null
fi
export HARTVAULT_AZURITE_BIN="$tools/node_modules/.bin/azurite-blob"

# PostgreSQL server binaries (initdb, pg_ctl, pg_dumpall, pg_amcheck, pg_waldump,
# pgbench) for the PostgreSQL engine's tests and the demo.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  apt_install PostgreSQL postgresql postgresql-contrib
fi

# promtool (Debian package prometheus) checks the agent's /metrics and the rules of
# `hartvault alerts rules`; Chromium (chromium, chromium-driver) loads the agent's
# dashboard headless in the tests.
if ! command -v promtool >/dev/null 2>&1 && [ ! -x /usr/bin/promtool ]; then
  apt_install promtool prometheus
fi
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  apt_install Chromium chromium chromium-driver fonts-liberation
fi

# The Neo4j test server: a launcher built with Maven against org.neo4j.test:neo4j-harness
# (Java 17), in .tools/neo4j-harness.
if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
  apt_install "Java 17 and Maven" openjdk-17-jdk-headless maven
fi
"$root/scripts/neo4j-harness.sh"
