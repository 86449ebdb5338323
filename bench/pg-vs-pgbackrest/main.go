//go:build unix

// Command pg-vs-pgbackrest runs hartvault and pgBackRest side by side on the same
// pgbench cluster, in one run, and prints wall time, stored bytes and peak memory of
// each step with the ratio hartvault / pgBackRest:
//
//  1. full backup (pgBackRest: zst level 3, process-max 2; hartvault: zstd level 3,
//     2 workers, encryption on as by default)
//  2. 20 s of pgbench, then a differential backup of each
//  3. restore to a time after the pgbench run, then start until promoted; each
//     restored cluster is checked with the tests' oracle and compared with the
//     source at the target, and no figures are printed unless both are exact
//  4. wal-push / archive-push of single segments
//
// Not a test. Needs PostgreSQL and the pgbackrest package; as root it runs the
// cluster and both tools as the postgres user.
//
//	go run ./bench/pg-vs-pgbackrest [-scale 150] [-seconds 20] [-dir /var/tmp/hvbench] [-keep]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hartonomous/hartvault/internal/testutil/pgoracle"
)

type runner struct {
	uid, gid uint32
	asUser   bool
	env      []string
}

type result struct {
	wall time.Duration
	rss  int64 // bytes, max over the process tree
	out  string
}

func (r *runner) run(name string, args ...string) (result, error) {
	c := exec.Command(name, args...)
	c.Env = append(os.Environ(), r.env...)
	if r.asUser {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: r.uid, Gid: r.gid}}
	}
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	start := time.Now()
	err := c.Run()
	res := result{wall: time.Since(start), out: out.String()}
	if c.ProcessState != nil {
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			res.rss = ru.Maxrss * 1024
		}
	}
	if err != nil {
		return res, fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return res, nil
}

func (r *runner) must(name string, args ...string) result {
	res, err := r.run(name, args...)
	if err != nil {
		fail(err)
	}
	return res
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pg-vs-pgbackrest:", err)
	os.Exit(1)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func dirSize(root string) int64 {
	var n int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

type row struct {
	step         string
	pgbr, hv     string
	ratio        string
	target, note string
}

func main() {
	scale := flag.Int("scale", 150, "pgbench scale (150 is about 2.2 GB)")
	seconds := flag.Int("seconds", 20, "seconds of pgbench between the full and the diff")
	dir := flag.String("dir", "", "work directory (default a new one under /var/tmp)")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()

	bin := "/usr/lib/postgresql/15/bin"
	if d := os.Getenv("HARTVAULT_PG_BIN"); d != "" {
		bin = d
	}
	pgbr, err := exec.LookPath("pgbackrest")
	if err != nil {
		fail(fmt.Errorf("pgbackrest not found: apt-get install pgbackrest"))
	}
	r := &runner{env: []string{"HARTVAULT_PASSPHRASE=bench passphrase"}}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			fail(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		r.uid, r.gid, r.asUser = uint32(uid), uint32(gid), true
	}
	if *dir == "" {
		*dir, err = os.MkdirTemp("/var/tmp", "hvbench")
		if err != nil {
			fail(err)
		}
	}
	if !*keep {
		defer os.RemoveAll(*dir)
	}
	os.Chmod(*dir, 0o755)
	os.Chown(*dir, int(r.uid), int(r.gid))
	hv := filepath.Join(*dir, "hartvault")
	if out, err := exec.Command("go", "build", "-o", hv, "./cmd/hartvault").CombinedOutput(); err != nil {
		fail(fmt.Errorf("build hartvault: %v\n%s", err, out))
	}
	data := filepath.Join(*dir, "data")
	plan := filepath.Join(*dir, "hartvault.yaml")
	pgbrConf := filepath.Join(*dir, "pgbackrest.conf")
	port := freePort()
	sock := *dir

	fmt.Printf("setting up: pgbench scale %d in %s\n", *scale, data)
	r.must(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C")
	archive := fmt.Sprintf("%s --config=%s --stanza=bench archive-push %%p && %s --config %s wal-push pg %%p", pgbr, pgbrConf, hv, plan)
	conf := fmt.Sprintf("\nport = %d\nunix_socket_directories = '%s'\nlisten_addresses = ''\nwal_level = replica\narchive_mode = on\narchive_command = '%s'\nmax_wal_size = 4GB\nshared_buffers = 256MB\n",
		port, sock, strings.ReplaceAll(archive, "'", "''"))
	appendFile(filepath.Join(data, "postgresql.conf"), conf)
	writeFile(pgbrConf, fmt.Sprintf(`[global]
repo1-path=%s/pgbackrest-repo
compress-type=zst
compress-level=3
process-max=2
start-fast=y
log-level-console=warn
log-level-file=off
lock-path=%s/pgbackrest-lock
spool-path=%s

[bench]
pg1-path=%s
pg1-port=%d
pg1-socket-path=%s
`, *dir, *dir, *dir, data, port, sock))
	writeFile(plan, fmt.Sprintf(`repository:
  url: file://%s/hartvault-repo
  passphrase_env: HARTVAULT_PASSPHRASE
  compression: zstd
  compression_level: 3
sources:
  - name: pg
    kind: postgres
    data_dir: %s
    conninfo: "host=%s port=%d user=postgres dbname=postgres"
`, *dir, data, sock, port))
	pgctl := func(args ...string) {
		r.must(filepath.Join(bin, "pg_ctl"), append([]string{"-D", data, "-w", "-l", filepath.Join(*dir, "pg.log")}, args...)...)
	}
	pgctl("start")
	defer r.run(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "stop")
	psql := func(sql string) string {
		return strings.TrimSpace(r.must(filepath.Join(bin, "psql"), "-X", "-A", "-t", "-h", sock, "-p", fmt.Sprint(port), "-U", "postgres", "-c", sql).out)
	}
	pgbench := func(args ...string) {
		r.must(filepath.Join(bin, "pgbench"), append([]string{"-h", sock, "-p", fmt.Sprint(port), "-U", "postgres"}, append(args, "postgres")...)...)
	}
	// Both tools wait for the WAL of a backup to be archived: start each step with
	// the archiver caught up, so neither pays for the other's backlog.
	caughtUp := func() {
		seg := psql("SELECT pg_walfile_name(pg_switch_wal())")
		for i := 0; i < 6000 && psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < seg; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	pgbench("-i", "-s", fmt.Sprint(*scale), "-q")
	psql("CHECKPOINT")
	dbSize := psql("SELECT pg_size_pretty(pg_database_size('postgres'))")
	r.must(pgbr, "--config="+pgbrConf, "--stanza=bench", "stanza-create")
	r.must(hv, "--config", plan, "init")
	fmt.Println("waiting for the archiver to catch up with pgbench -i's WAL")
	caughtUp()
	exec.Command("sh", "-c", "cat "+data+"/base/*/* > /dev/null 2>&1").Run() // warm the page cache for both

	var rows []row
	ratio := func(h, p float64) string {
		if p == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", h/p)
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

	// 1. Full backups.
	fmt.Println("full backups")
	pf := r.must(pgbr, "--config="+pgbrConf, "--stanza=bench", "--type=full", "backup")
	pfStored := dirSize(filepath.Join(*dir, "pgbackrest-repo", "backup"))
	caughtUp()
	hf := r.must(hv, "--config", plan, "-q", "backup", "pg", "--type", "full")
	hfStored := hvStored(r, hv, plan, 0)
	// The same at zstd level 1 (klauspost's SpeedFastest), for what bounds level 3.
	plan1 := filepath.Join(*dir, "hartvault-level1.yaml")
	if b, err := os.ReadFile(plan); err == nil {
		writeFile(plan1, strings.Replace(string(b), "compression_level: 3", "compression_level: 1", 1))
	}
	caughtUp()
	hf1 := r.must(hv, "--config", plan1, "-q", "backup", "pg", "--type", "full")
	hf1Stored := hvStored(r, hv, plan, 1)
	rows = append(rows,
		row{"full backup", secs(pf.wall), secs(hf.wall), ratio(hf.wall.Seconds(), pf.wall.Seconds()), "<= 0.70", ""},
		row{"  at zstd level 1", "", secs(hf1.wall), ratio(hf1.wall.Seconds(), pf.wall.Seconds()), "", fmt.Sprintf("hartvault only: %s stored", mb(hf1Stored))},
		row{"  stored", mb(pfStored), mb(hfStored), ratio(float64(hfStored), float64(pfStored)), "", "hartvault also encrypts"},
		row{"  peak RSS", mb(pf.rss), mb(hf.rss), ratio(float64(hf.rss), float64(pf.rss)), "<= 200 MB", ""})

	// 2. pgbench, then diffs.
	fmt.Printf("pgbench for %d s\n", *seconds)
	pgbench("-c", "2", "-j", "2", "-T", fmt.Sprint(*seconds))
	xacts := psql("SELECT sum(xact_commit) FROM pg_stat_database")
	fmt.Println("diff backups")
	caughtUp()
	before := dirSize(filepath.Join(*dir, "pgbackrest-repo", "backup"))
	pd := r.must(pgbr, "--config="+pgbrConf, "--stanza=bench", "--type=diff", "backup")
	pdStored := dirSize(filepath.Join(*dir, "pgbackrest-repo", "backup")) - before
	caughtUp()
	hd := r.must(hv, "--config", plan, "-q", "backup", "pg", "--type", "diff")
	hdStored := hvStored(r, hv, plan, 2)
	rows = append(rows,
		row{"diff backup", secs(pd.wall), secs(hd.wall), ratio(hd.wall.Seconds(), pd.wall.Seconds()), "", ""},
		row{"  stored", mb(pdStored), mb(hdStored), ratio(float64(hdStored), float64(pdStored)), "<= 0.30", "page level vs whole changed files"},
		row{"  peak RSS", mb(pd.rss), mb(hd.rss), ratio(float64(hd.rss), float64(pd.rss)), "<= 200 MB", ""})

	// 3. Restore to a time after the pgbench run.
	time.Sleep(time.Second)
	target := time.Now()
	time.Sleep(time.Second)
	// What the restores must hold: sequential scans of the source at the target.
	want, err := pgoracle.Snapshot(context.Background(), pgoracle.Server{Host: sock, Port: port, User: "postgres", BinDir: bin})
	if err != nil {
		fail(err)
	}
	pgbench("-c", "2", "-j", "2", "-t", "500")
	seg := psql("SELECT pg_walfile_name(pg_switch_wal())")
	for i := 0; i < 600 && psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < seg; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	pgbrTarget := target.UTC().Format("2006-01-02 15:04:05.000000") + "+00"
	fmt.Println("restores to", pgbrTarget)
	pData := filepath.Join(*dir, "restore-pgbackrest")
	hData := filepath.Join(*dir, "restore-hartvault")
	os.Mkdir(pData, 0o700)
	os.Chown(pData, int(r.uid), int(r.gid))
	pr := r.must(pgbr, "--config="+pgbrConf, "--stanza=bench", "--type=time", "--target="+pgbrTarget, "--target-action=promote",
		"--pg1-path="+pData, "restore")
	pPort := freePort()
	appendFile(filepath.Join(pData, "postgresql.auto.conf"), fmt.Sprintf("\nport = %d\narchive_mode = off\n", pPort))
	startAt := time.Now()
	r.must(filepath.Join(bin, "pg_ctl"), "-D", pData, "-w", "-t", "3600", "-l", filepath.Join(*dir, "restore-pgbackrest.log"), "-o", fmt.Sprintf("-k %s", sock), "start")
	waitPromoted(r, bin, sock, pPort)
	pReady := time.Since(startAt)
	pExact := exact("pgBackRest", sock, pPort, bin, want)
	r.run(filepath.Join(bin, "pg_ctl"), "-D", pData, "-m", "fast", "stop")

	hPort := freePort()
	hr := r.must(hv, "--config", plan, "-q", "restore", "pg", "--target", hData, "--to", target.Format(time.RFC3339Nano), "--start", "--port", fmt.Sprint(hPort))
	hExact := exact("hartvault", hData, hPort, bin, want)
	r.run(filepath.Join(bin, "pg_ctl"), "-D", hData, "-m", "fast", "stop")
	if !pExact || !hExact {
		fail(fmt.Errorf("a restore is not exact (above): no figures are reported"))
	}
	hReplay := parseReplay(hr.out)
	pTotal := pr.wall + pReady
	rows = append(rows,
		row{"restore files", secs(pr.wall), secs(hr.wall - hReplay), ratio((hr.wall - hReplay).Seconds(), pr.wall.Seconds()), "", ""},
		row{"  start until promoted", secs(pReady), secs(hReplay), ratio(hReplay.Seconds(), pReady.Seconds()), "", "WAL replay"},
		row{"restore to ready", secs(pTotal), secs(hr.wall), ratio(hr.wall.Seconds(), pTotal.Seconds()), "<= 0.80", ""},
		row{"  peak RSS", mb(pr.rss), mb(hr.rss), ratio(float64(hr.rss), float64(pr.rss)), "<= 200 MB", ""})

	// 4. Pushing single segments: each tool into a scratch archive, against the
	// time of the storage write alone (the stored bytes written and fsynced).
	push := pushSegments(r, *dir, data, hv, pgbr, bin)
	rows = append(rows, push...)

	fmt.Printf("\npgbench scale %d (%s), %s transactions in %d s of pgbench; 2 cores\n\n", *scale, dbSize, xacts, *seconds)
	fmt.Printf("%-24s %12s %12s %8s %10s  %s\n", "step", "pgBackRest", "hartvault", "hv/pgbr", "target", "")
	for _, x := range rows {
		fmt.Printf("%-24s %12s %12s %8s %10s  %s\n", x.step, x.pgbr, x.hv, x.ratio, x.target, x.note)
	}
}

// exact checks a restored cluster with the oracle the tests use (index-only
// against sequential counts, pg_visibility, pg_amcheck --heapallindexed) and
// compares what sequential scans see with the source at the target.
func exact(tool, host string, port int, bin string, want pgoracle.State) bool {
	s := pgoracle.Server{Host: host, Port: port, User: "postgres", BinDir: bin}
	got, err := pgoracle.Snapshot(context.Background(), s)
	if err != nil {
		fail(fmt.Errorf("%s restore: %v", tool, err))
	}
	rep, err := pgoracle.Check(context.Background(), s)
	if err != nil {
		fail(fmt.Errorf("%s restore: %v", tool, err))
	}
	diff := want.Diff(got)
	if rep.OK() && len(diff) == 0 {
		fmt.Printf("%s: %s; every table equals the source at the target\n", tool, rep)
		return true
	}
	fmt.Printf("%s: %s\n", tool, rep)
	for _, d := range diff {
		fmt.Printf("%s: differs from the source at the target: %s\n", tool, d)
	}
	return false
}

func appendFile(p, s string) {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		fail(err)
	}
	f.WriteString(s)
	f.Close()
}

func writeFile(p, s string) {
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		fail(err)
	}
}

// hvStored reads the stored bytes of the n-th backup from list --json.
func hvStored(r *runner, hv, plan string, n int) int64 {
	res := r.must(hv, "--config", plan, "list", "--json")
	var list []struct {
		StoredBytes int64 `json:"stored_bytes"`
	}
	if err := json.Unmarshal([]byte(res.out), &list); err != nil || len(list) <= n {
		fail(fmt.Errorf("list --json: %v\n%s", err, res.out))
	}
	return list[n].StoredBytes
}

func waitPromoted(r *runner, bin, sock string, port int) {
	for i := 0; i < 36000; i++ {
		res, err := r.run(filepath.Join(bin, "psql"), "-X", "-A", "-t", "-h", sock, "-p", fmt.Sprint(port), "-U", "postgres", "-c", "SELECT pg_is_in_recovery()")
		if err == nil && strings.TrimSpace(res.out) == "f" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	fail(fmt.Errorf("the pgBackRest restore was not promoted"))
}

// parseReplay reads "WAL replay and promotion took 3.2s" from hartvault's output.
func parseReplay(out string) time.Duration {
	i := strings.Index(out, "promotion took ")
	if i < 0 {
		return 0
	}
	d, _ := time.ParseDuration(strings.Fields(out[i+len("promotion took "):])[0])
	return d
}

// pushSegments times pushing single WAL segments with each tool into a fresh
// archive, against writing the same number of stored bytes with fsync.
func pushSegments(r *runner, dir, data, hv, pgbr, bin string) []row {
	segs, _ := filepath.Glob(filepath.Join(data, "pg_wal", "0000000*"))
	sort.Strings(segs)
	var use []string
	for _, s := range segs {
		if len(filepath.Base(s)) == 24 {
			use = append(use, s)
		}
	}
	if len(use) > 10 {
		use = use[len(use)-10:]
	}
	if len(use) == 0 {
		return nil
	}
	scratch := filepath.Join(dir, "push")
	os.MkdirAll(scratch, 0o755)
	os.Chown(scratch, int(r.uid), int(r.gid))
	plan := filepath.Join(scratch, "hartvault.yaml")
	writeFile(plan, fmt.Sprintf("repository:\n  url: file://%s/repo\n  passphrase_env: HARTVAULT_PASSPHRASE\nsources:\n  - name: pg\n    kind: postgres\n    data_dir: %s\n    conninfo: \"host=/nonexistent\"\n", scratch, data))
	r.must(hv, "--config", plan, "init")
	var hvTotal, pgTotal time.Duration
	for _, s := range use {
		hvTotal += r.must(hv, "--config", plan, "wal-push", "pg", s).wall
	}
	conf := filepath.Join(scratch, "pgbackrest.conf")
	writeFile(conf, fmt.Sprintf("[global]\nrepo1-path=%s/pgbr\ncompress-type=zst\ncompress-level=3\nlog-level-console=warn\nlog-level-file=off\nlock-path=%s/lock\n[bench]\npg1-path=%s\n", scratch, scratch, data))
	// archive-push checks the stanza against the running cluster; reuse the main one.
	main := filepath.Join(dir, "pgbackrest.conf")
	r.must(pgbr, "--config="+main, "--stanza=bench", "--repo1-path="+filepath.Join(scratch, "pgbr"), "stanza-create")
	for _, s := range use {
		pgTotal += r.must(pgbr, "--config="+main, "--stanza=bench", "--repo1-path="+filepath.Join(scratch, "pgbr"), "archive-push", s).wall
	}
	stored := dirSize(filepath.Join(scratch, "repo", "logs")) / int64(len(use))
	var writeTotal time.Duration
	buf := bytes.Repeat([]byte{1}, int(stored))
	for i := range use {
		start := time.Now()
		f, _ := os.Create(filepath.Join(scratch, fmt.Sprintf("w%d", i)))
		f.Write(buf)
		f.Sync()
		f.Close()
		writeTotal += time.Since(start)
	}
	n := time.Duration(len(use))
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	over := hvTotal/n - writeTotal/n
	return []row{
		{"push one WAL segment", ms(pgTotal / n), ms(hvTotal / n), fmt.Sprintf("%.2f", hvTotal.Seconds()/pgTotal.Seconds()), "", fmt.Sprintf("%d segments, %s stored each", len(use), fmt.Sprintf("%.1f MB", float64(stored)/1e6))},
		{"  above storage write", "", ms(over), "", "<= 30 ms", "write+fsync of the stored bytes: " + ms(writeTotal/n)},
	}
}
