package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/status"
)

// call is one backup the fake engine was asked for.
type call struct {
	At      time.Time
	Source  string
	Type    string
	Reason  string
	Outcome string
}

func (c call) String() string {
	return fmt.Sprintf("%s %s %s (%s)", c.At.UTC().Format("Mon 01-02 15:04:05"), c.Source, c.Type, c.Reason)
}

func (h *harness) strings() []string {
	var out []string
	for _, c := range h.recorded() {
		out = append(out, c.String())
	}
	return out
}

// harness runs an agent on a fake clock with a fake backup function and catalog.
type harness struct {
	t     *testing.T
	clk   *fakeClock
	agent *Agent
	waits chan wait
	stop  context.CancelFunc
	done  chan struct{}

	mu       sync.Mutex
	calls    []call
	catalog  map[string]time.Time // source/type -> newest backup start
	running  map[string]int       // source -> backups running now
	maxRun   map[string]int
	count    map[string]int                                 // calls by source/type
	behavior func(ctx context.Context, j Job, n int) Result // n: calls of this source and type so far
}

type wait struct {
	next    time.Time
	running int
}

func newHarness(t *testing.T, p *plan.Plan, start time.Time, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, clk: newFakeClock(start), waits: make(chan wait), catalog: map[string]time.Time{},
		running: map[string]int{}, maxRun: map[string]int{}, count: map[string]int{}}
	if p.Location == nil {
		p.Location = time.UTC
	}
	cfg := Config{
		Plan:  p,
		Clock: h.clk,
		Backup: func(ctx context.Context, j Job) Result {
			h.mu.Lock()
			h.running[j.Source]++
			h.maxRun[j.Source] = max(h.maxRun[j.Source], h.running[j.Source])
			n := h.count[j.Source+"/"+j.Type]
			h.count[j.Source+"/"+j.Type]++
			idx := len(h.calls)
			h.calls = append(h.calls, call{At: h.clk.Now(), Source: j.Source, Type: j.Type, Reason: j.Reason})
			behavior := h.behavior
			h.mu.Unlock()
			res := Result{Outcome: OutcomeOK}
			if behavior != nil {
				res = behavior(ctx, j, n)
			}
			h.mu.Lock()
			h.calls[idx].Outcome = res.Outcome
			h.running[j.Source]--
			if res.Outcome == OutcomeOK {
				h.catalog[j.Source+"/"+j.Type] = h.clk.Now()
			}
			h.mu.Unlock()
			return res
		},
		LastBackup: func(ctx context.Context, source, typ string) (time.Time, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.catalog[source+"/"+typ], nil
		},
		OnWait: func(next time.Time, running int) { h.waits <- wait{next, running} },
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.agent = a
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	h.done = make(chan struct{})
	go func() {
		defer close(h.done)
		if err := h.agent.Run(ctx); err != nil {
			h.t.Errorf("Run: %v", err)
		}
	}()
	h.t.Cleanup(h.shutdown)
}

// shutdown stops the agent and waits for Run to return.
func (h *harness) shutdown() {
	if h.stop == nil {
		return
	}
	h.stop()
	for {
		select {
		case <-h.waits:
		case <-h.done:
			h.stop = nil
			return
		case <-time.After(30 * time.Second):
			h.t.Fatal("the agent did not stop within 30 s of its context ending")
		}
	}
}

// idle returns the next time the scheduler waits with no backup running.
func (h *harness) idle() time.Time {
	h.t.Helper()
	for {
		w := h.nextWait()
		if w.running == 0 {
			return w.next
		}
	}
}

func (h *harness) nextWait() wait {
	h.t.Helper()
	select {
	case w := <-h.waits:
		return w
	case <-time.After(30 * time.Second):
		h.t.Fatal("the scheduler did not come back to wait within 30 s")
		return wait{}
	}
}

// runUntil advances the fake clock from one idle wait to the next until the next
// wake-up would be at or after end.
func (h *harness) runUntil(end time.Time) {
	h.t.Helper()
	for {
		next := h.idle()
		if !next.Before(end) {
			return
		}
		h.advance(next)
	}
}

// advance moves the clock to next once the scheduler has armed its timer (it
// does so right after telling OnWait).
func (h *harness) advance(next time.Time) {
	h.t.Helper()
	if next.After(h.clk.Now()) { // else the timer fired at once
		h.clk.waitTimers(h.t, 1)
	}
	h.clk.Set(next)
}

func (h *harness) recorded() []call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

func dur(d time.Duration) plan.Duration { return plan.Duration(d) }

// The seed's schedule: SQL Agent's full on Sunday 01:00, differential daily 02:00
// and log hourly; the graph daily at 03:00; the assemblies backed up when changed.
func seedPlan() *plan.Plan {
	return &plan.Plan{Location: time.UTC, Sources: []plan.Source{
		{Name: "hartonomous", Kind: "mssql", Schedule: plan.Schedule{Full: "0 1 * * SUN", Diff: "0 2 * * *", Log: "@hourly"}},
		{Name: "graph", Kind: "neo4j", Schedule: plan.Schedule{Full: "0 3 * * *"}},
		{Name: "assemblies", Kind: plan.KindFiles, Schedule: plan.Schedule{Full: plan.OnChange}, CheckEvery: dur(time.Minute)},
	}}
}

var (
	monday = time.Date(2026, 3, 2, 0, 0, 30, 0, time.UTC) // a Monday, 30 s past midnight
	day    = 24 * time.Hour
)

func at(d time.Duration) time.Time { return monday.Add(-30 * time.Second).Add(d) }

// TestWeekOfSeedSchedule drives the agent through a week of the seed's schedule on
// a fake clock: exactly the expected backups fire, in order.
func TestWeekOfSeedSchedule(t *testing.T) {
	changes := []time.Time{at(2*day + 10*time.Hour + 30*time.Minute), at(4*day + 18*time.Hour + 10*time.Second)}
	h := newHarness(t, seedPlan(), monday, nil)
	// Up to date when the week starts: nothing to catch up.
	h.catalog["hartonomous/full"] = at(-day + time.Hour)
	h.catalog["hartonomous/diff"] = at(-day + 2*time.Hour)
	h.catalog["hartonomous/log"] = at(0)
	h.catalog["graph/full"] = at(-day + 3*time.Hour)
	h.behavior = func(_ context.Context, j Job, n int) Result {
		if j.Source != "assemblies" {
			return Result{Outcome: OutcomeOK}
		}
		// The file set changed at these instants: the first check after each backs it up.
		h.mu.Lock()
		last := h.catalog["assemblies/full"]
		h.mu.Unlock()
		for _, c := range changes {
			if c.After(last) && !c.After(h.clk.Now()) {
				return Result{Outcome: OutcomeOK}
			}
		}
		return Result{Outcome: OutcomeUnchanged}
	}
	h.catalog["assemblies/full"] = at(-day)
	h.start()
	h.runUntil(monday.Add(7 * day))
	h.shutdown()

	var want []call
	for d := 0; d < 7; d++ {
		for hr := 0; hr < 24; hr++ {
			t0 := at(time.Duration(d)*day + time.Duration(hr)*time.Hour)
			if d == 6 && hr == 1 { // Sunday
				want = append(want, call{At: t0, Source: "hartonomous", Type: "full", Reason: ReasonSchedule})
			}
			if hr == 2 {
				want = append(want, call{At: t0, Source: "hartonomous", Type: "diff", Reason: ReasonSchedule})
			}
			if d > 0 || hr > 0 {
				want = append(want, call{At: t0, Source: "hartonomous", Type: "log", Reason: ReasonSchedule})
			}
			if hr == 3 {
				want = append(want, call{At: t0, Source: "graph", Type: "full", Reason: ReasonSchedule})
			}
		}
	}
	want = append(want, call{At: at(7 * day), Source: "hartonomous", Type: "log", Reason: ReasonSchedule}) // next Monday 00:00
	want = append(want, call{At: at(2*day + 10*time.Hour + 30*time.Minute + 30*time.Second), Source: "assemblies", Type: "full", Reason: ReasonOnChange},
		call{At: at(4*day + 18*time.Hour + 30*time.Second), Source: "assemblies", Type: "full", Reason: ReasonOnChange})

	var got []call
	checks := 0
	for _, c := range h.recorded() {
		if c.Source == "assemblies" {
			checks++
			if c.Outcome == OutcomeUnchanged {
				continue
			}
		}
		got = append(got, c)
	}
	order := func(calls []call) {
		slices.SortStableFunc(calls, func(a, b call) int { return a.At.Compare(b.At) })
	}
	order(want)
	// Per source, the recorded order is the order the backups ran in.
	for _, src := range []string{"hartonomous", "graph", "assemblies"} {
		var w, g []string
		for _, c := range want {
			if c.Source == src {
				w = append(w, c.String())
			}
		}
		for _, c := range got {
			if c.Source == src {
				g = append(g, c.String())
			}
		}
		if !slices.Equal(w, g) {
			t.Errorf("%s: %d backups, want %d\nfirst difference: %s", src, len(g), len(w), firstDifference(w, g))
		}
	}
	order(got)
	if len(got) != len(want) {
		t.Fatalf("%d backups in the week, want %d", len(got), len(want))
	}
	for i := range want {
		if !got[i].At.Equal(want[i].At) {
			t.Fatalf("backup %d at %v, want %v", i, got[i], want[i])
		}
	}
	if checks != 7*24*60 {
		t.Errorf("the assemblies were checked %d times, want one a minute: %d", checks, 7*24*60)
	}
	if n := len(want); n != 1+7+168+7+2 {
		t.Fatalf("expected list has %d entries", n)
	}
	for src, n := range h.maxRun {
		if n > 1 {
			t.Errorf("%s ran %d backups at once", src, n)
		}
	}
	t.Logf("a week of the seed's schedule: %d backups (1 full, 7 diffs, 168 logs, 7 graph fulls, 2 assembly changes) and %d assembly checks", len(got), checks)
}

func firstDifference(want, got []string) string {
	for i := 0; i < len(want) || i < len(got); i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			return fmt.Sprintf("#%d: got %q, want %q", i, g, w)
		}
	}
	return "none"
}

// TestCatchUpMissedFull: an agent started on a Wednesday after the Sunday full was
// missed (and three weeks of them) takes one full at start, not one per missed
// fire, skips the diff that full makes pointless, and then keeps the schedule. A
// second start finds nothing due.
func TestCatchUpMissedFull(t *testing.T) {
	p := &plan.Plan{Sources: []plan.Source{{Name: "db", Kind: plan.KindPostgres,
		Schedule: plan.Schedule{Full: "0 1 * * SUN", Diff: "0 2 * * *"}}}}
	wed := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	h := newHarness(t, p, wed, nil)
	h.catalog["db/full"] = time.Date(2026, 2, 8, 1, 0, 2, 0, time.UTC) // three Sundays ago
	h.catalog["db/diff"] = time.Date(2026, 2, 28, 2, 0, 1, 0, time.UTC)
	h.start()
	h.runUntil(time.Date(2026, 3, 8, 1, 30, 0, 0, time.UTC))
	h.shutdown()
	var got []string
	for _, c := range h.recorded() {
		got = append(got, c.String())
	}
	want := []string{
		"Wed 03-04 09:00:00 db full (catch-up)",
		"Thu 03-05 02:00:00 db diff (schedule)",
		"Fri 03-06 02:00:00 db diff (schedule)",
		"Sat 03-07 02:00:00 db diff (schedule)",
		"Sun 03-08 01:00:00 db full (schedule)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("backups:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Restarted at once: the catalog shows the catch-up was taken.
	h2 := newHarness(t, p, time.Date(2026, 3, 8, 1, 30, 0, 0, time.UTC), nil)
	h2.catalog = h.catalog
	h2.start()
	h2.runUntil(time.Date(2026, 3, 8, 1, 59, 0, 0, time.UTC))
	h2.shutdown()
	if calls := h2.recorded(); len(calls) != 0 {
		t.Fatalf("a restart with nothing missed ran %v", calls)
	}

	// A diff missed on its own (the full is current) is caught up too.
	h3 := newHarness(t, p, time.Date(2026, 3, 9, 8, 0, 0, 0, time.UTC), nil)
	h3.catalog = h.catalog
	h3.start()
	h3.runUntil(time.Date(2026, 3, 9, 8, 30, 0, 0, time.UTC))
	h3.shutdown()
	if calls := h3.recorded(); len(calls) != 1 || calls[0].Type != "diff" || calls[0].Reason != ReasonCatchUp {
		t.Fatalf("missed diff: %v", calls)
	}
}

// TestNoOverlap: a backup that runs for hours is never joined by a second backup of
// the same source; the fires that come meanwhile collapse into one run after it,
// and other sources carry on.
func TestNoOverlap(t *testing.T) {
	p := &plan.Plan{Sources: []plan.Source{
		{Name: "db", Kind: "mssql", Schedule: plan.Schedule{Log: "@hourly", Diff: "30 * * * *"}},
		{Name: "files", Kind: plan.KindFiles, Schedule: plan.Schedule{Full: "@hourly"}},
	}}
	release := make(chan struct{})
	h := newHarness(t, p, time.Date(2026, 3, 2, 0, 45, 0, 0, time.UTC), nil)
	h.catalog["db/diff"] = time.Date(2026, 3, 2, 0, 30, 0, 0, time.UTC)
	h.catalog["db/log"] = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	h.catalog["files/full"] = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	h.behavior = func(_ context.Context, j Job, n int) Result {
		if j.Source == "db" && j.Type == "log" && n == 0 {
			<-release // the first log backup is slow: three hours
		}
		return Result{Outcome: OutcomeOK}
	}
	h.start()
	h.advance(h.idle()) // 01:00: db log (slow) and files
	four := time.Date(2026, 3, 2, 4, 0, 0, 0, time.UTC)
	for {
		w := h.nextWait()
		if w.running != 1 {
			continue // files is running too
		}
		if h.clk.Now().Equal(four) {
			break
		}
		h.advance(w.next) // every half hour, with the slow log still running
	}
	close(release)
	h.runUntil(time.Date(2026, 3, 2, 4, 15, 0, 0, time.UTC))
	h.shutdown()

	var db, files []string
	for _, c := range h.recorded() {
		if c.Source == "db" {
			db = append(db, c.String())
		} else {
			files = append(files, c.String())
		}
	}
	wantDB := []string{
		"Mon 03-02 01:00:00 db log (schedule)",
		// released at 04:00: the waiting diff (01:30, 02:30, 03:30 collapsed) and log (02:00..04:00 collapsed)
		"Mon 03-02 04:00:00 db diff (schedule)",
		"Mon 03-02 04:00:00 db log (schedule)",
	}
	if !slices.Equal(db, wantDB) {
		t.Errorf("db backups:\n%s\nwant:\n%s", strings.Join(db, "\n"), strings.Join(wantDB, "\n"))
	}
	if len(files) != 4 {
		t.Errorf("files backups went on meanwhile: %v, want 4 (01:00 to 04:00)", files)
	}
	if h.maxRun["db"] != 1 || h.maxRun["files"] != 1 {
		t.Errorf("most backups at once: %v", h.maxRun)
	}
}

// TestRetryBackoff: a failing backup is retried after 1, 2, 4 minutes (and
// reported to the webhook each time) until it succeeds; the next day's fire is
// back on schedule.
func TestRetryBackoff(t *testing.T) {
	events := make(chan Event, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e Event
		json.NewDecoder(r.Body).Decode(&e)
		events <- e
	}))
	defer hook.Close()
	p := &plan.Plan{Sources: []plan.Source{{Name: "db", Kind: plan.KindPostgres, Schedule: plan.Schedule{Full: "0 1 * * *"}}}}
	h := newHarness(t, p, time.Date(2026, 3, 2, 0, 59, 0, 0, time.UTC), func(c *Config) { c.Webhook = hook.URL })
	h.behavior = func(_ context.Context, j Job, n int) Result {
		if n < 3 {
			return Result{Outcome: OutcomeFailed, Err: fmt.Errorf("connect to db: password=secret refused (attempt %d)", n+1)}
		}
		return Result{Outcome: OutcomeOK}
	}
	h.catalog["db/full"] = time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)
	h.start()
	h.runUntil(time.Date(2026, 3, 3, 1, 30, 0, 0, time.UTC))
	h.shutdown()
	var got []string
	for _, c := range h.recorded() {
		got = append(got, c.String())
	}
	want := []string{
		"Mon 03-02 01:00:00 db full (schedule)",
		"Mon 03-02 01:01:00 db full (retry)",
		"Mon 03-02 01:03:00 db full (retry)",
		"Mon 03-02 01:07:00 db full (retry)",
		"Tue 03-03 01:00:00 db full (schedule)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("attempts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := 1; i <= 3; i++ {
		select {
		case e := <-events:
			if e.Event != EventBackupFailed || e.Source != "db" || e.Type != "full" || e.Attempt != i ||
				!strings.Contains(e.Message, "refused") || strings.Contains(e.Message, "secret") || e.RetryAt.IsZero() {
				t.Fatalf("event %d: %+v", i, e)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("failure %d was not posted to the webhook", i)
		}
	}
}

// TestLockedElsewhere: a source locked by another run is tried again a minute later,
// not failed; when the other run (another agent) took the same backup meanwhile,
// this agent does not take it again.
func TestLockedElsewhere(t *testing.T) {
	p := &plan.Plan{Sources: []plan.Source{
		{Name: "a", Kind: plan.KindPostgres, Schedule: plan.Schedule{Full: "0 1 * * *"}},
		{Name: "b", Kind: plan.KindPostgres, Schedule: plan.Schedule{Full: "0 1 * * *"}},
	}}
	h := newHarness(t, p, time.Date(2026, 3, 2, 0, 59, 0, 0, time.UTC), nil)
	h.catalog["a/full"] = time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)
	h.catalog["b/full"] = time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)
	h.behavior = func(_ context.Context, j Job, n int) Result {
		if n == 0 {
			if j.Source == "b" { // the other agent is taking b's full: it commits at 01:00:30
				h.mu.Lock()
				h.catalog["b/full"] = time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
				h.mu.Unlock()
			}
			return Result{Outcome: OutcomeLocked, Err: errors.New("source is locked by otherhost pid 7")}
		}
		return Result{Outcome: OutcomeOK}
	}
	h.start()
	h.runUntil(time.Date(2026, 3, 2, 1, 30, 0, 0, time.UTC))
	h.shutdown()
	var got []string
	for _, c := range h.recorded() {
		got = append(got, c.String())
	}
	slices.Sort(got)
	want := []string{
		"Mon 03-02 01:00:00 a full (schedule)",
		"Mon 03-02 01:00:00 b full (schedule)",
		"Mon 03-02 01:01:00 a full (locked)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("attempts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v := counterValue(t, h.agent, MetricFailures, "a", "full"); v != 0 {
		t.Fatalf("a locked source counted %v failures", v)
	}
}

// TestStopAbandonsWork: cancelling the agent's context (SIGTERM) cancels the
// backup in flight, waits for it, and Run returns nil.
func TestStopAbandonsWork(t *testing.T) {
	p := &plan.Plan{Sources: []plan.Source{{Name: "db", Kind: plan.KindPostgres, Schedule: plan.Schedule{Full: "@hourly"}}}}
	started := make(chan struct{})
	finished := make(chan error, 1)
	h := newHarness(t, p, time.Date(2026, 3, 2, 0, 59, 0, 0, time.UTC), func(c *Config) {
		c.Pruner = func(context.Context, string) error { t.Error("pruned after an abandoned backup"); return nil }
	})
	h.catalog["db/full"] = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	h.behavior = func(ctx context.Context, j Job, n int) Result {
		close(started)
		<-ctx.Done()
		finished <- ctx.Err()
		return Result{Outcome: OutcomeFailed, Err: ctx.Err()}
	}
	h.start()
	h.advance(h.idle())
	<-started
	h.shutdown()
	if err := <-finished; !errors.Is(err, context.Canceled) {
		t.Fatalf("the backup in flight saw %v", err)
	}
	if v := counterValue(t, h.agent, MetricAttempts, "db", "full", OutcomeAbandoned); v != 1 {
		t.Fatalf("abandoned attempts: %v", v)
	}
}

// TestOnChangeFailureBacksOff: a file set whose check fails is checked again after
// the backoff (not every minute), and once it succeeds, every minute again.
func TestOnChangeFailureBacksOff(t *testing.T) {
	p := &plan.Plan{Sources: []plan.Source{{Name: "files", Kind: plan.KindFiles,
		Schedule: plan.Schedule{Full: plan.OnChange}, CheckEvery: dur(time.Minute)}}}
	h := newHarness(t, p, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), func(c *Config) { c.RetryBase = 2 * time.Minute })
	h.behavior = func(_ context.Context, j Job, n int) Result {
		if n < 3 {
			return Result{Outcome: OutcomeFailed, Err: errors.New("scan: permission denied")}
		}
		return Result{Outcome: OutcomeUnchanged}
	}
	h.start()
	h.runUntil(time.Date(2026, 3, 2, 0, 17, 0, 0, time.UTC))
	h.shutdown()
	var mins []int
	for _, c := range h.recorded() {
		mins = append(mins, c.At.Minute())
	}
	if want := []int{0, 2, 6, 14, 15, 16}; !slices.Equal(mins, want) {
		t.Fatalf("checks at minutes %v, want %v", mins, want)
	}
}

// TestScheduleTimeZone: schedules are read in the plan's time zone.
func TestScheduleTimeZone(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	p := &plan.Plan{Location: ny, Sources: []plan.Source{{Name: "db", Kind: plan.KindPostgres, Schedule: plan.Schedule{Full: "0 1 * * SUN"}}}}
	h := newHarness(t, p, time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC), nil)
	h.catalog["db/full"] = time.Date(2026, 2, 22, 6, 0, 0, 0, time.UTC)
	h.start()
	h.runUntil(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC))
	h.shutdown()
	calls := h.recorded()
	if len(calls) != 1 || !calls[0].At.Equal(time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)) { // 01:00 EST
		t.Fatalf("Sunday 01:00 in New York: %v", calls)
	}
}

func TestPrevFire(t *testing.T) {
	for _, c := range []struct {
		expr string
		now  time.Time
		want time.Time
	}{
		{"0 1 * * SUN", time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)},
		{"0 1 * * SUN", time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)},
		{"@hourly", time.Date(2026, 3, 4, 9, 59, 59, 0, time.UTC), time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)},
		{"0 0 1 1 *", time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"@monthly", time.Date(2026, 3, 31, 9, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"0 0 29 2 *", time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC), time.Time{}}, // 29 Feb: none within a year
	} {
		s, err := plan.ParseSchedule(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := prevFire(s, c.now, time.UTC); !got.Equal(c.want) {
			t.Errorf("prevFire(%q, %v) = %v, want %v", c.expr, c.now, got, c.want)
		}
	}
	// robfig's "@every <duration>" (for tests and short intervals): the previous
	// fire is within one interval.
	s, _ := plan.ParseSchedule("@every 2s")
	now := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	if got := prevFire(s, now, time.UTC); got.After(now) || now.Sub(got) > 2*time.Second {
		t.Errorf("prevFire(@every 2s) = %v", got)
	}
}

// TestAlertNotifications: alerts raised and cleared between status evaluations
// are posted to the webhook.
func TestAlertNotifications(t *testing.T) {
	events := make(chan Event, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e Event
		json.NewDecoder(r.Body).Decode(&e)
		events <- e
	}))
	defer hook.Close()
	reports := make(chan *status.Report, 4)
	p := &plan.Plan{Sources: []plan.Source{{Name: "db", Kind: plan.KindPostgres}}}
	h := newHarness(t, p, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), func(c *Config) {
		c.OnWait = nil
		c.Webhook = hook.URL
		c.StatusEvery = time.Minute
		c.Status = func(ctx context.Context) (*status.Report, error) {
			select {
			case r := <-reports:
				return r, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	})
	stale := alert("db", "full", "stale")
	reports <- report(stale)
	h.start()
	expect := func(kind, alertKind string) {
		t.Helper()
		select {
		case e := <-events:
			if e.Event != kind || e.Source != "db" || e.Type != "full" || e.Alert != alertKind || e.Message == "" || e.Time.IsZero() {
				t.Fatalf("event %+v, want %s %s", e, kind, alertKind)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s event", kind)
		}
	}
	expect(EventAlertRaised, "stale")
	reports <- report(stale, alert("db", "full", "failed")) // stale goes on: no new event for it
	h.clk.Set(h.clk.waitTimers(t, 2))                       // the status loop's and the scheduler's timers
	expect(EventAlertRaised, "failed")
	reports <- report()
	h.clk.Set(h.clk.waitTimers(t, 2))
	got := map[string]bool{}
	for i := 0; i < 2; i++ {
		select {
		case e := <-events:
			got[e.Event+" "+e.Alert] = true
		case <-time.After(30 * time.Second):
			t.Fatal("alerts were not cleared")
		}
	}
	if !got["alert_cleared stale"] || !got["alert_cleared failed"] {
		t.Fatalf("cleared: %v", got)
	}
	h.shutdown()
}

// TestStreamRestarted: continuous log streaming that stops is restarted with
// backoff and reported; stopping the agent stops it.
func TestStreamRestarted(t *testing.T) {
	p := &plan.Plan{Sources: []plan.Source{{Name: "pg", Kind: plan.KindPostgres, Schedule: plan.Schedule{Log: plan.Continuous}}}}
	var mu sync.Mutex
	calls := 0
	h := newHarness(t, p, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), func(c *Config) {
		c.OnWait = nil
		c.Stream = func(ctx context.Context, source string) error {
			mu.Lock()
			calls++
			n := calls
			mu.Unlock()
			if n <= 2 {
				return fmt.Errorf("connection %d lost", n)
			}
			<-ctx.Done()
			return nil
		}
	})
	h.start()
	for i := 0; i < 2; i++ {
		// the scheduler's day-long timer and the stream's restart timer
		next := h.clk.waitTimers(t, 2)
		h.clk.Set(next)
	}
	for {
		mu.Lock()
		n := calls
		mu.Unlock()
		if n == 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if elapsed := h.clk.Now().Sub(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)); elapsed != 15*time.Second {
		t.Fatalf("restarted after %v of backoff, want 5s + 10s", elapsed)
	}
	h.shutdown()
	if v := counterValue(t, h.agent, "hartvault_log_stream_restarts_total", "pg"); v != 2 {
		t.Fatalf("restarts counted: %v", v)
	}
}

func TestNotifierRetriesAndNeverBlocks(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		n := hits
		mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"event":"backup_failed"`) {
			t.Errorf("webhook got %s %q", r.Header.Get("Content-Type"), body)
		}
		if n < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer hook.Close()
	failed := 0
	n := NewNotifier(NotifierConfig{URL: hook.URL, Backoff: time.Millisecond, Queue: 2, Failed: func() { failed++ }})
	// Not running yet: the queue takes two, then drops without blocking.
	for i := 0; i < 3; i++ {
		n.Notify(Event{Event: EventBackupFailed, Source: "s"})
	}
	if failed != 1 {
		t.Fatalf("dropped %d events, want 1", failed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	cancel() // pending events are still delivered (drained) before Run returns
	<-done
	mu.Lock()
	defer mu.Unlock()
	if hits != 4 { // 2 refused + 1 delivered for the first event, 1 for the second
		t.Fatalf("webhook hit %d times, want 4", hits)
	}
}

func alert(source, typ, kind string) status.Alert {
	return status.Alert{Source: source, Type: typ, Kind: kind, Message: kind + " " + typ + " of " + source}
}

func report(alerts ...status.Alert) *status.Report {
	return &status.Report{Sources: []status.SourceStatus{}, Alerts: append([]status.Alert{}, alerts...)}
}

// counterValue reads a metric of the agent's registry by name and label values.
func counterValue(t *testing.T, a *Agent, name string, values ...string) float64 {
	t.Helper()
	mfs, err := a.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(values) {
				continue
			}
			for _, v := range values {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetValue() == v
				}
				if !found {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// TestAlertsCarriedAcrossRestart: an agent starts from the alerts notified before
// its restart: one still firing is not raised again, one that cleared meanwhile is
// reported cleared, and what it notifies is saved.
func TestAlertsCarriedAcrossRestart(t *testing.T) {
	events := make(chan Event, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e Event
		json.NewDecoder(r.Body).Decode(&e)
		events <- e
	}))
	defer hook.Close()
	reports := make(chan *status.Report, 4)
	saved := make(chan []status.Alert, 4)
	p := &plan.Plan{Sources: []plan.Source{{Name: "db", Kind: plan.KindPostgres}}}
	stale, failed, slow := alert("db", "full", "stale"), alert("db", "diff", "failed"), alert("db", "full", "slow")
	h := newHarness(t, p, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), func(c *Config) {
		c.OnWait = nil
		c.Webhook = hook.URL
		c.StatusEvery = time.Minute
		c.LoadAlerts = func(context.Context) ([]status.Alert, error) { return []status.Alert{stale, failed}, nil }
		c.SaveAlerts = func(_ context.Context, as []status.Alert) error { saved <- as; return nil }
		c.Status = func(ctx context.Context) (*status.Report, error) {
			select {
			case r := <-reports:
				return r, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	})
	reports <- report(stale) // stale goes on; failed cleared while the agent was down
	h.start()
	next := func() Event {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(30 * time.Second):
			t.Fatal("no webhook event")
			return Event{}
		}
	}
	if e := next(); e.Event != EventAlertCleared || e.Alert != "failed" || e.Type != "diff" {
		t.Fatalf("first event %+v, want failed cleared", e)
	}
	if as := <-saved; len(as) != 1 || as[0].Key() != stale.Key() {
		t.Fatalf("saved %+v", as)
	}
	reports <- report(stale, slow)
	h.clk.Set(h.clk.waitTimers(t, 2))
	if e := next(); e.Event != EventAlertRaised || e.Alert != "slow" { // not stale again
		t.Fatalf("second event %+v, want slow raised", e)
	}
	h.shutdown()
}

// The log goes to the replicas every SyncLogsEvery, a failure is retried at the next
// tick, and the loop ends with the agent.
func TestLogSyncedToReplicasEveryMinute(t *testing.T) {
	p := &plan.Plan{Sources: []plan.Source{{Name: "pg", Kind: plan.KindPostgres}}}
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var at []time.Time
	var h *harness
	h = newHarness(t, p, start, func(c *Config) {
		c.OnWait = nil
		c.SyncLogs = func(ctx context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, h.clk.Now())
			if len(at) == 2 {
				return fmt.Errorf("replica unreachable")
			}
			return nil
		}
	})
	h.start()
	for i := 0; i < 3; i++ {
		// the scheduler's day-long timer and the sync loop's
		h.clk.Set(h.clk.waitTimers(t, 2))
		for {
			mu.Lock()
			n := len(at)
			mu.Unlock()
			if n == i+1 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	h.shutdown()
	mu.Lock()
	defer mu.Unlock()
	for i, tm := range at {
		if want := start.Add(time.Duration(i+1) * time.Minute); !tm.Equal(want) {
			t.Fatalf("sync %d at %v, want %v (every minute, a failure included)", i+1, tm, want)
		}
	}
}
