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
echo "file-set demo complete: repository in .demo/repo, restores in .demo/restore-v1 and .demo/restore-v2"

# ---------------------------------------------------------------------------------
# PostgreSQL: a throwaway cluster archiving its WAL into a file:// repository, a
# full backup, writes, an accident, and a point-in-time restore to just before it.
# ---------------------------------------------------------------------------------
pgbin=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  [ -x "$d/initdb" ] && { pgbin="$d"; break; }
done
[ -n "$pgbin" ] || pgbin="$(pg_config --bindir 2>/dev/null || true)"
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  echo "PostgreSQL server binaries not found: install postgresql (apt-get install postgresql) for the PostgreSQL demo"; exit 1
fi
# PostgreSQL refuses to run as root; so do the cluster and hartvault (archive_command
# runs as the cluster's owner).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env HARTVAULT_PASSPHRASE="$HARTVAULT_PASSPHRASE" "$@"; else "$@"; fi; }
hvpg() { printf '$ hartvault %s\n' "$*"; as_pg "$root/bin/hartvault" --config "$pg/hartvault.yaml" "$@"; }
pg="$demo/pg"
mkdir -p "$pg"
[ "$(id -u)" = 0 ] && chown postgres "$pg"
chmod 755 "$demo" "$pg"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
psqlq() { as_pg "$pgbin/psql" -X -q -A -t -h "${3:-$pg}" -p "$1" -U postgres -d postgres -c "$2"; }

step "PostgreSQL: a throwaway cluster ($pgbin) archiving WAL with hartvault wal-push"
as_pg "$pgbin/initdb" -D "$pg/data" -A trust -U postgres --no-sync --data-checksums >/dev/null
as_pg tee -a "$pg/data/postgresql.conf" >/dev/null <<CONF
port = $port
unix_socket_directories = '$pg'
listen_addresses = ''
wal_level = replica
archive_mode = on
archive_command = '$root/bin/hartvault --config $pg/hartvault.yaml wal-push hartonomous %p'
CONF
as_pg tee "$pg/hartvault.yaml" >/dev/null <<YAML
repository:
  url: file://$pg/repo
  passphrase_env: HARTVAULT_PASSPHRASE
sources:
  - name: hartonomous
    kind: postgres
    data_dir: $pg/data
    conninfo: "host=$pg port=$port user=postgres dbname=postgres"
YAML
cat "$pg/hartvault.yaml"
as_pg "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/server.log" -w start >/dev/null
stop_pg() {
  as_pg "$pgbin/pg_ctl" -D "$pg/data" -m fast -w stop >/dev/null 2>&1 || true
  as_pg "$pgbin/pg_ctl" -D "$pg/restored" -m fast -w stop >/dev/null 2>&1 || true
}
trap stop_pg EXIT
hvpg init

step "atoms ingested, then a full backup"
psqlq "$port" "CREATE TABLE atoms (id bigserial PRIMARY KEY, content text, ingest_timestamp timestamptz DEFAULT clock_timestamp());
  INSERT INTO atoms (content) SELECT md5(g::text) FROM generate_series(1, 50000) g;"
hvpg backup hartonomous --type full

step "more atoms, then the moment to go back to, then an accident"
psqlq "$port" "INSERT INTO atoms (content) SELECT md5(g::text) FROM generate_series(1, 20000) g;"
sleep 1; target=$(date -u +"%Y-%m-%d %H:%M:%S.%6N+00"); sleep 1
before=$(psqlq "$port" "SELECT count(*) FROM atoms")
psqlq "$port" "DELETE FROM atoms WHERE id % 2 = 0"
after=$(psqlq "$port" "SELECT count(*) FROM atoms")
echo "atoms at $target: $before; after the accident: $after"
seg=$(psqlq "$port" "SELECT pg_walfile_name(pg_switch_wal())")
for i in $(seq 1 100); do
  [ "$(psqlq "$port" "SELECT coalesce(last_archived_wal,'') >= '$seg' FROM pg_stat_archiver")" = "t" ] && break; sleep 0.2
done

step "the catalog and a verification of every object, page checksum and WAL segment"
hvpg list hartonomous
hvpg verify hartonomous

step "point-in-time restore plan to $target (touches nothing)"
hvpg restore hartonomous --to "$target" --target "$pg/restored" --plan

step "restore to $target, start the restored cluster and wait for its promotion"
hvpg restore hartonomous --to "$target" --target "$pg/restored" --start --port "$port2"
restored=$(psqlq "$port2" "SELECT count(*) FROM atoms" "$pg/restored")  # its socket is in its data directory
echo "restored cluster holds $restored atoms (expected $before)"
[ "$restored" = "$before" ] || { echo "point-in-time restore gave $restored atoms, expected $before"; exit 1; }

echo
echo "demo complete: file sets restored byte for byte; PostgreSQL restored to $target with all $before atoms"
