#!/usr/bin/env bash
# Builds the Neo4j test launcher (tools/neo4j-harness: a real Neo4j 5.26 Community server
# from Maven Central's org.neo4j.test:neo4j-harness, on Java 17) into .tools/neo4j-harness/:
#   launcher.jar     the launcher
#   classpath.txt    the runtime class path of neo4j-harness (jars in the local Maven repository)
# Idempotent and quiet: does nothing when the build matches tools/neo4j-harness's sources.
# Needs java (17 or newer) and mvn on PATH. Used by internal/testutil/neo4jtest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/tools/neo4j-harness"
out="$root/.tools/neo4j-harness"

for cmd in java mvn; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "neo4j-harness: $cmd not found on PATH (install a JDK 17 and Maven)" >&2
    exit 1
  fi
done

stamp="$( (cat "$src/pom.xml"; find "$src/src" -type f -name '*.java' | LC_ALL=C sort | xargs cat) | sha256sum | cut -d' ' -f1)"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/launcher.jar" ] && [ -f "$out/classpath.txt" ]; then
  # the jars the class path names must still be in the local Maven repository
  missing=0
  IFS=':' read -r -a jars < "$out/classpath.txt" || true # no final newline: read says EOF
  for j in "${jars[@]}"; do [ -f "$j" ] || { missing=1; break; }; done
  [ "$missing" = 0 ] && exit 0
fi

echo "==> building the Neo4j test launcher (Maven: org.neo4j.test:neo4j-harness) into .tools/neo4j-harness"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
cp -r "$src/pom.xml" "$src/src" "$build/"
if ! mvn -B -q -f "$build/pom.xml" package >"$build/mvn.log" 2>&1; then
  cat "$build/mvn.log" >&2
  echo "neo4j-harness: mvn package failed (log above)" >&2
  exit 1
fi
mkdir -p "$out"
cp "$build/target/launcher.jar" "$out/launcher.jar.tmp" && mv "$out/launcher.jar.tmp" "$out/launcher.jar"
cp "$build/target/classpath.txt" "$out/classpath.txt.tmp" && mv "$out/classpath.txt.tmp" "$out/classpath.txt"
echo "$stamp" > "$out/stamp"
