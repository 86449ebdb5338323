package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/agent"
	"github.com/hartonomous/hartvault/internal/status"
	"github.com/hartonomous/hartvault/internal/testutil/pgtest"
)

// TestAgent runs `hartvault agent` against a real PostgreSQL cluster (full and diff
// on short schedules, WAL streamed continuously) and a file set checked every
// second: backups appear; with the schedule stopped and the file set gone,
// `status --check` fails naming the alerts and the webhook receives them; with the
// schedule back, the agent catches up and the alerts are cleared. Its /metrics and
// the rules of `alerts rules` pass promtool; its dashboard loads in headless
// Chromium and shows each source.
func TestAgent(t *testing.T) {
	promtool := findTool(t, "promtool", "/usr/bin/promtool")
	chromium := findTool(t, "chromium", "/usr/bin/chromium")
	p := newPGWorld(t, pgOpts{})
	c := p.pg
	p.ok("init")
	writes(c, 1, 2000)

	files := p.owner.Dir(t, "hv-agent-files")
	assemblies := filepath.Join(files, "assemblies")
	os.Mkdir(assemblies, 0o755)
	os.WriteFile(filepath.Join(assemblies, "Hartonomous.Clr.dll"), bytes.Repeat([]byte("clr v1 "), 5000), 0o644)
	chownTree(t, files, p.owner)

	hook := newWebhook(t)
	port := pgtest.FreePort(t)
	plan := func(pgSchedule string) {
		y := fmt.Sprintf(`repository:
  url: %s
  passphrase_env: HARTVAULT_PASSPHRASE
timezone: UTC
sources:
  - name: pg
    kind: postgres
    data_dir: %s
    conninfo: %q
    schedule: { %s }
    alerts: { full: 2m, diff: 15s, log: 2m }
    max_duration: 5m
  - name: assemblies
    kind: files
    paths: [%s]
    schedule: { full: on-change }
    check_every: 1s
    alerts: { full: 1h }
    max_duration: 5m
agent:
  listen: 127.0.0.1:%d
  notify: { webhook: %s }
`, p.url, c.DataDir, c.Conninfo("postgres"), pgSchedule, assemblies, port, hook.url)
		if err := os.WriteFile(p.plan, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	scheduled := `full: "@every 30s", diff: "@every 5s", log: continuous`
	plan(scheduled)

	// 1. Backups appear: a full at once (nothing in the catalog: caught up at
	// start), diffs every 5 s, WAL streamed, the file set at its first check.
	ag := startAgent(t, p, port)
	start := time.Now()
	phase := func(what string) { t.Logf("%s after %v", what, time.Since(start).Round(100*time.Millisecond)) }
	count := func(source, typ string) int {
		n := 0
		for _, b := range p.list() {
			if b.Source == source && b.Type == typ {
				n++
			}
		}
		return n
	}
	pgtest.WaitFor(t, 90*time.Second, "a full and two diffs of pg and a backup of the file set", func() bool {
		return count("pg", "full") >= 1 && count("pg", "diff") >= 2 && count("assemblies", "full") >= 1
	})
	writes(c, 2, 2000)
	os.WriteFile(filepath.Join(assemblies, "Hartonomous.Clr.dll"), bytes.Repeat([]byte("clr v2 "), 5000), 0o644)
	pgtest.WaitFor(t, 60*time.Second, "the changed file set to be backed up", func() bool { return count("assemblies", "full") >= 2 })
	var rep status.Report
	pgtest.WaitFor(t, 60*time.Second, "status --check to pass with WAL past the newest backup", func() bool {
		if p.run("status", "--check").code != 0 {
			return false
		}
		rep = p.status()
		w := rep.Source("pg").Restorable
		return w.Continuous && w.Latest.After(w.Earliest)
	})
	if pg := rep.Source("pg"); len(pg.Timeline.Log) != 1 || len(pg.Types) != 3 || pg.Types[2].Type != "log" || pg.Types[2].LastSuccess.IsZero() {
		t.Fatalf("pg status: %+v", pg)
	}
	table := p.ok("status").stdout
	for _, want := range []string{"SOURCE", "pg", "assemblies", "@every 5s", "continuous", "any instant from", "Alerts:\n  none"} {
		if !strings.Contains(table, want) {
			t.Fatalf("status does not show %q:\n%s", want, table)
		}
	}
	phase("backups appeared, status --check passed")
	ag.stop()

	// 2. The schedule stopped (only WAL streaming left) and the file set gone: the
	// diff goes stale and the file set's check fails.
	plan(`log: continuous`)
	os.Rename(assemblies, assemblies+".away")
	hook.reset()
	ag = startAgent(t, p, port)
	hook.wait(t, 90*time.Second, agent.EventBackupFailed, "assemblies", "full", "")
	hook.wait(t, 90*time.Second, agent.EventAlertRaised, "assemblies", "full", status.Failed)
	hook.wait(t, 90*time.Second, agent.EventAlertRaised, "pg", "diff", status.Stale)
	res := p.run("status", "--check")
	if res.code != 1 || !strings.Contains(res.stderr, "pg diff stale") || !strings.Contains(res.stderr, "assemblies full failed") ||
		!strings.Contains(res.stdout, "CRITICAL") {
		t.Fatalf("status --check with alerts firing: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	for _, l := range strings.Split(strings.TrimSpace(res.stderr), "\n") {
		if !strings.HasPrefix(l, "hartvault: alert: ") {
			t.Fatalf("status --check stderr line %q", l)
		}
	}
	phase("alerts raised, posted and named by status --check")
	ag.stop()

	// 3. Back on schedule: caught up at start, alerts cleared.
	plan(scheduled)
	os.Rename(assemblies+".away", assemblies)
	hook.reset()
	ag = startAgent(t, p, port)
	hook.wait(t, 90*time.Second, agent.EventAlertCleared, "pg", "diff", status.Stale)
	hook.wait(t, 90*time.Second, agent.EventAlertCleared, "assemblies", "full", status.Failed)
	pgtest.WaitFor(t, 60*time.Second, "status --check to pass again", func() bool { return p.run("status", "--check").code == 0 })
	phase("caught up, alerts cleared")

	// /metrics passes promtool and names the sources; /api/status is status --json.
	metrics := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	for _, want := range []string{`hartvault_last_success_timestamp_seconds{source="pg",type="diff"}`, `hartvault_wal_lag_seconds{source="pg",type="log"}`,
		`hartvault_restorable_window_end_timestamp_seconds{source="pg"}`, `hartvault_backup_failures_total{source="assemblies",type="full"}`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
	runTool(t, strings.NewReader(metrics), promtool, "check", "metrics")
	var api status.Report
	if err := json.Unmarshal([]byte(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/api/status", port))), &api); err != nil || len(api.Sources) != 2 {
		t.Fatalf("/api/status: %v %+v", err, api)
	}
	rules := filepath.Join(t.TempDir(), "hartvault-rules.yml")
	os.WriteFile(rules, []byte(p.ok("alerts", "rules").stdout), 0o644)
	runTool(t, nil, promtool, "check", "rules", rules)

	// The dashboard in headless Chromium: it loads and shows each source with a badge.
	shots := t.TempDir()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	dom := runTool(t, nil, chromium, append(chromiumFlags(t), "--dump-dom", url)...)
	for _, want := range []string{`data-source="pg"`, `data-source="assemblies"`, `class="badge `, "Restorable to any instant", `class="timeline"`} {
		if !strings.Contains(dom, want) {
			t.Fatalf("the dashboard's DOM lacks %q:\n%.3000s", want, dom)
		}
	}
	shot := filepath.Join(shots, "dashboard.png")
	runTool(t, nil, chromium, append(chromiumFlags(t), "--screenshot="+shot, "--window-size=1280,900", url)...)
	if info, err := os.Stat(shot); err != nil || info.Size() < 10<<10 {
		t.Fatalf("dashboard screenshot: %v", err)
	}
	t.Logf("dashboard screenshot: %s", shot)
	if dst := os.Getenv("HARTVAULT_DASHBOARD_SCREENSHOT"); dst != "" { // keep it past the test
		if b, err := os.ReadFile(shot); err == nil {
			os.WriteFile(dst, b, 0o644)
		}
	}

	phase("metrics, rules and dashboard checked")
	ag.stop()
	p.ok("verify") // nothing half-written by the agents that were stopped
}

// agentProc is a running `hartvault agent`.
type agentProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

func startAgent(t *testing.T, p *pgWorld, port int) *agentProc {
	t.Helper()
	a := &agentProc{t: t, cmd: p.cmd("agent", "--status-every", "1s"), out: &syncBuffer{}, done: make(chan error, 1)}
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", a.out.String())
		}
	})
	pgtest.WaitFor(t, 30*time.Second, "the agent to serve /healthz", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return a
}

// stop sends SIGTERM and expects the agent to exit 0.
func (a *agentProc) stop() {
	a.t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		if err != nil {
			a.t.Fatalf("the agent exited with %v on SIGTERM\n%s", err, a.out.String())
		}
	case <-time.After(60 * time.Second):
		a.t.Fatalf("the agent did not exit within 60 s of SIGTERM\n%s", a.out.String())
	}
	if strings.Contains(a.out.String(), "panic:") {
		a.t.Fatalf("the agent panicked:\n%s", a.out.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// webhook collects the agent's notifications.
type webhook struct {
	url    string
	mu     sync.Mutex
	events []agent.Event
}

func newWebhook(t *testing.T) *webhook {
	h := &webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e agent.Event
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil || r.Method != http.MethodPost {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/hook"
	return h
}

// reset forgets the events received so far.
func (h *webhook) reset() {
	h.mu.Lock()
	h.events = nil
	h.mu.Unlock()
}

// wait waits for an event (alert "" matches any) received since the last reset.
func (h *webhook) wait(t *testing.T, timeout time.Duration, event, source, typ, alert string) agent.Event {
	t.Helper()
	var got agent.Event
	pgtest.WaitFor(t, timeout, fmt.Sprintf("webhook event %s %s %s %s", event, source, typ, alert), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, e := range h.events {
			if e.Event == event && e.Source == source && e.Type == typ && (alert == "" || e.Alert == alert) {
				got = e
				return true
			}
		}
		return false
	})
	if got.Message == "" || got.Time.IsZero() || got.Host == "" {
		t.Fatalf("webhook event without message, time or host: %+v", got)
	}
	return got
}

func (p *pgWorld) status() status.Report {
	p.t.Helper()
	var rep status.Report
	if err := json.Unmarshal([]byte(p.ok("status", "--json").stdout), &rep); err != nil {
		p.t.Fatalf("status --json: %v", err)
	}
	return rep
}

func chownTree(t *testing.T, root string, o pgtest.Owner) {
	filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, o.UID, o.GID)
		}
		return nil
	})
}

// findTool finds a test tool, or fails naming what installs it.
func findTool(t *testing.T, name, fallback string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	t.Fatalf("%s not found: run scripts/test.sh, which installs it (Debian packages prometheus for promtool, chromium for the dashboard)", name)
	return ""
}

func runTool(t *testing.T, stdin io.Reader, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func chromiumFlags(t *testing.T) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--disable-quic", "--no-first-run", "--user-data-dir=" + t.TempDir()}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}
