#!/usr/bin/env bash
# Runs all of hartvault's tests on a fresh machine: installs what they need (Azurite
# from npm into .tools/, Go modules), checks formatting, vet and the Windows build,
# then runs every test with the race detector. Nothing is skipped silently: a test
# whose dependency is missing fails and says what to install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/tools.sh

echo "==> go mod download"
go mod download

echo "==> gofmt"
unformatted=$(gofmt -l cmd internal e2e bench 2>/dev/null || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "==> go vet"
go vet ./...

echo "==> GOOS=windows go build"
GOOS=windows GOARCH=amd64 go build -o /dev/null ./...

echo "==> go test -race"
go test -race -count=1 -timeout 25m "$@" ./...
