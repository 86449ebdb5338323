#!/usr/bin/env bash
# The hartvault demo, on the embedded default (a file:// repository in ./.demo):
# builds the binary, backs up a file set of CLR assemblies, changes one, backs up
# again, restores both versions and compares them with what was backed up.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
demo="$root/.demo"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
hv() { printf '$ hartvault %s\n' "$*"; "$root/bin/hartvault" --config "$demo/hartvault.yaml" "$@"; }

step "building bin/hartvault"
go build -o bin/hartvault ./cmd/hartvault
bin/hartvault version

rm -rf "$demo"
mkdir -p "$demo/hartonomous/assemblies" "$demo/hartonomous/scripts"
export HARTVAULT_PASSPHRASE="demo passphrase: use a long random one in production"

step "a file set like Hartonomous's: CLR assemblies and their deploy script"
head -c 3000000 /dev/urandom > "$demo/hartonomous/assemblies/Hartonomous.Clr.dll"
head -c 1500000 /dev/urandom > "$demo/hartonomous/assemblies/System.Numerics.Tensors.dll"
head -c 800000 /dev/urandom > "$demo/hartonomous/assemblies/System.Memory.dll"
cat > "$demo/hartonomous/scripts/deploy-clr.sql" <<'SQL'
CREATE ASSEMBLY [System.Memory] FROM 'System.Memory.dll' WITH PERMISSION_SET = UNSAFE;
CREATE ASSEMBLY [System.Numerics.Tensors] FROM 'System.Numerics.Tensors.dll' WITH PERMISSION_SET = UNSAFE;
CREATE ASSEMBLY [Hartonomous.Clr] FROM 'Hartonomous.Clr.dll' WITH PERMISSION_SET = UNSAFE;
SQL
echo "build cache" > "$demo/hartonomous/assemblies/obj.tmp"
ls -l "$demo/hartonomous/assemblies"

cat > "$demo/hartvault.yaml" <<YAML
repository:
  url: file://./repo                    # relative to this plan file: .demo/repo
  passphrase_env: HARTVAULT_PASSPHRASE
  compression: zstd
sources:
  - name: assemblies
    kind: files
    paths: [$demo/hartonomous/assemblies, $demo/hartonomous/scripts/deploy-clr.sql]
    exclude: ["*.tmp"]
YAML
step "the plan"
cat "$demo/hartvault.yaml"

step "create the repository"
hv init

step "first backup, tagged with the assembly version"
v1=$(hv backup assemblies --tag v1.0.0 | tee /dev/stderr | tail -n1)
cp -a "$demo/hartonomous" "$demo/expected-v1"

step "nothing changed: no new backup"
hv backup assemblies

step "a new build of Hartonomous.Clr.dll, then a second backup"
head -c 3100000 /dev/urandom > "$demo/hartonomous/assemblies/Hartonomous.Clr.dll"
v2=$(hv backup assemblies --tag v1.0.1 | tee /dev/stderr | tail -n1)

step "the catalog"
hv list

step "verify every stored object"
hv verify

step "restore plan for v1.0.0 (touches nothing)"
hv restore assemblies --backup v1.0.0 --target "$demo/restore-v1" --plan

step "restore both versions and compare with what was backed up"
hv restore assemblies --backup "$v1" --target "$demo/restore-v1"
hv restore assemblies --backup v1.0.1 --target "$demo/restore-v2"
rm -f "$demo/expected-v1/assemblies/obj.tmp"
diff -r "$demo/expected-v1/assemblies" "$demo/restore-v1/assemblies"
cmp "$demo/expected-v1/scripts/deploy-clr.sql" "$demo/restore-v1/deploy-clr.sql"
diff -r --exclude='*.tmp' "$demo/hartonomous/assemblies" "$demo/restore-v2/assemblies"
if cmp -s "$demo/restore-v1/assemblies/Hartonomous.Clr.dll" "$demo/restore-v2/assemblies/Hartonomous.Clr.dll"; then
  echo "the two versions should differ"; exit 1
fi
echo "v1.0.0 ($v1) and v1.0.1 ($v2) restored byte for byte"

step "restoring into a non-empty directory is refused"
if hv restore assemblies --target "$demo/restore-v1"; then echo "should have been refused"; exit 1; fi

echo
echo "demo complete: repository in .demo/repo, restores in .demo/restore-v1 and .demo/restore-v2"
