//go:build !windows

// Package pgtest runs throwaway PostgreSQL clusters for tests: initdb and pg_ctl in
// a temp dir, on a free port, as the postgres user when the tests run as root (CI
// does, and initdb refuses root).
package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/testutil/pgoracle"
)

// BinDir finds the PostgreSQL server binaries: $HARTVAULT_PG_BIN, else the newest
// /usr/lib/postgresql/*/bin, else pg_config --bindir.
func BinDir() (string, error) {
	if d := os.Getenv("HARTVAULT_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL server binaries not found: install postgresql (scripts/test.sh does) or set HARTVAULT_PG_BIN")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Owner is the user clusters and hartvault run as: postgres when running as root,
// otherwise the current user.
type Owner struct {
	UID, GID int
	Name     string
	Home     string
}

// CurrentOwner returns who clusters run as.
func CurrentOwner() (Owner, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return Owner{}, err
		}
		return Owner{UID: os.Geteuid(), GID: os.Getegid(), Name: u.Username, Home: u.HomeDir}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return Owner{}, fmt.Errorf("running as root needs a postgres user (the postgresql package creates it): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return Owner{UID: uid, GID: gid, Name: u.Username, Home: u.HomeDir}, nil
}

// Command prepares a command to run as the owner.
func (o Owner) Command(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	if os.Geteuid() == 0 && o.UID != 0 {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(o.UID), Gid: uint32(o.GID)}}
		c.Env = append(os.Environ(), "HOME="+o.Home, "USER="+o.Name)
	}
	return c
}

// Dir makes a fresh directory the owner can use (t.TempDir's are root-only when
// running as root). It is removed when the test ends.
func (o Owner) Dir(tb testing.TB, pattern string) string {
	tb.Helper()
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Chown(d, o.UID, o.GID); err != nil {
		tb.Fatal(err)
	}
	os.Chmod(d, 0o755)
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Options shape a new cluster.
type Options struct {
	// Checksums turns on data checksums (initdb --data-checksums).
	Checksums bool
	// Conf lines are appended to postgresql.conf (archive_command and the like).
	Conf []string
	// Env is added to the server's environment (the archiver inherits it).
	Env []string
}

// Cluster is a running PostgreSQL cluster.
type Cluster struct {
	tb      testing.TB
	Bin     string
	Owner   Owner
	DataDir string
	SockDir string
	Port    int
	env     []string
}

// New creates and starts a cluster; it is stopped when the test ends.
func New(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	bin, err := BinDir()
	if err != nil {
		tb.Fatal(err)
	}
	owner, err := CurrentOwner()
	if err != nil {
		tb.Fatal(err)
	}
	base := owner.Dir(tb, "hvpg")
	c := &Cluster{tb: tb, Bin: bin, Owner: owner, DataDir: filepath.Join(base, "data"), SockDir: base, Port: FreePort(tb), env: o.Env}
	args := []string{"-D", c.DataDir, "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale", "C"}
	if o.Checksums {
		args = append(args, "--data-checksums")
	}
	c.mustRun(filepath.Join(bin, "initdb"), args...)
	conf := []string{
		fmt.Sprintf("port = %d", c.Port),
		fmt.Sprintf("unix_socket_directories = '%s'", c.SockDir),
		"listen_addresses = ''",
		"wal_level = replica",
		"max_wal_senders = 10",
		"max_replication_slots = 10",
		"fsync = off", // throwaway clusters; hartvault's own writes still fsync
		"synchronous_commit = off",
		"full_page_writes = on",
		"shared_buffers = 64MB",
		"log_min_messages = warning",
		"logging_collector = off",
	}
	conf = append(conf, o.Conf...)
	f, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintln(f, strings.Join(conf, "\n"))
	f.Close()
	c.Start()
	tb.Cleanup(c.stopQuietly)
	return c
}

// Attach wraps an existing data directory (a restored one) so the test can start,
// query and stop it; it is stopped when the test ends.
func Attach(tb testing.TB, dataDir string, port int) *Cluster {
	bin, err := BinDir()
	if err != nil {
		tb.Fatal(err)
	}
	owner, err := CurrentOwner()
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{tb: tb, Bin: bin, Owner: owner, DataDir: dataDir, SockDir: filepath.Dir(dataDir), Port: port}
	tb.Cleanup(c.stopQuietly)
	return c
}

// FreePort returns a TCP port nothing listens on.
func FreePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (c *Cluster) mustRun(name string, args ...string) string {
	c.tb.Helper()
	out, err := c.run(name, args...)
	if err != nil {
		c.tb.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

func (c *Cluster) run(name string, args ...string) (string, error) {
	cmd := c.Owner.Command(name, args...)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, c.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Start starts the cluster and waits until it accepts connections.
func (c *Cluster) Start() {
	c.tb.Helper()
	logf := filepath.Join(filepath.Dir(c.DataDir), filepath.Base(c.DataDir)+".log")
	c.mustRun(filepath.Join(c.Bin, "pg_ctl"), "-D", c.DataDir, "-l", logf, "-w", "-t", "120",
		"-o", fmt.Sprintf("-p %d -k %s", c.Port, c.SockDir), "start")
}

// Stop stops the cluster (fast shutdown).
func (c *Cluster) Stop() {
	c.tb.Helper()
	c.mustRun(filepath.Join(c.Bin, "pg_ctl"), "-D", c.DataDir, "-m", "fast", "-w", "stop")
}

func (c *Cluster) stopQuietly() {
	if _, err := os.Stat(filepath.Join(c.DataDir, "postmaster.pid")); err == nil {
		c.run(filepath.Join(c.Bin, "pg_ctl"), "-D", c.DataDir, "-m", "immediate", "-w", "stop")
	}
}

// Log returns the server log.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(c.DataDir), filepath.Base(c.DataDir)+".log"))
	return string(b)
}

// Conninfo is a libpq connection string for the cluster.
func (c *Cluster) Conninfo(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", c.SockDir, c.Port, db)
}

// SQL runs statements with psql and returns the unaligned, tuples-only output.
func (c *Cluster) SQL(db, sql string) string {
	c.tb.Helper()
	out, err := c.TrySQL(db, sql)
	if err != nil {
		c.tb.Fatalf("psql: %v\n%s\n%s", err, sql, out)
	}
	return out
}

// TrySQL is SQL that returns the error instead of failing the test.
func (c *Cluster) TrySQL(db, sql string) (string, error) {
	if db == "" {
		db = "postgres"
	}
	out, err := c.run(filepath.Join(c.Bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", c.SockDir, "-p", strconv.Itoa(c.Port), "-U", "postgres", "-d", db, "-c", sql)
	return strings.TrimSpace(out), err
}

// DumpAll returns pg_dumpall's output: the whole cluster as SQL, for comparisons.
func (c *Cluster) DumpAll() string {
	c.tb.Helper()
	args := []string{"-h", c.SockDir, "-p", strconv.Itoa(c.Port), "-U", "postgres", "--no-role-passwords"}
	if out, _ := c.run(filepath.Join(c.Bin, "pg_dumpall"), "--help"); strings.Contains(out, "--restrict-key") {
		args = append(args, "--restrict-key=hartvault") // else a random key differs between dumps
	}
	return c.mustRun(filepath.Join(c.Bin, "pg_dumpall"), args...)
}

// Server is how the oracle reaches the cluster.
func (c *Cluster) Server() pgoracle.Server {
	return pgoracle.Server{Host: c.SockDir, Port: c.Port, User: "postgres", BinDir: c.Bin}
}

// CheckExact fails the test unless the cluster answers as the engine itself would
// be checked (pgoracle.Check): index-only counts equal sequential counts, nothing
// contradicts the visibility map, pg_amcheck --heapallindexed is clean. Every
// restored cluster a test starts goes through it.
func (c *Cluster) CheckExact() *pgoracle.Report {
	c.tb.Helper()
	rep, err := pgoracle.Check(Context(c.tb), c.Server())
	if err != nil {
		c.tb.Fatalf("checking the restored cluster: %v", err)
	}
	if !rep.OK() {
		c.tb.Fatal(rep.String())
	}
	return rep
}

// AmCheck is CheckExact (the name older tests use).
func (c *Cluster) AmCheck() { c.tb.Helper(); c.CheckExact() }

// Snapshot records what sequential scans see of every user table, to compare a
// restore with the source at the instant it was taken.
func (c *Cluster) Snapshot() pgoracle.State {
	c.tb.Helper()
	st, err := pgoracle.Snapshot(Context(c.tb), c.Server())
	if err != nil {
		c.tb.Fatalf("snapshot of the cluster: %v", err)
	}
	return st
}

// Pgbench runs pgbench against the cluster's postgres database.
func (c *Cluster) Pgbench(args ...string) string {
	c.tb.Helper()
	args = append([]string{"-h", c.SockDir, "-p", strconv.Itoa(c.Port), "-U", "postgres"}, args...)
	return c.mustRun(filepath.Join(c.Bin, "pgbench"), append(args, "postgres")...)
}

// WaitFor polls cond every 100 ms until it holds or the timeout passes.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Context is a test context with a deadline.
func Context(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}
