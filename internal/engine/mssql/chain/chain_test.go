package chain

import (
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

var cet = time.FixedZone("", 3600)

func at(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, cet)
	if err != nil {
		panic(err)
	}
	return t
}

// threeWeeks is the production schedule from Sunday 2 November 2025: weekly full,
// daily differential, hourly log backups.
func threeWeeks(t *testing.T, hook func(*sim)) *sim {
	s := newSim(t, at("2025-11-02 00:00"))
	s.run(21, hook)
	return s
}

func mustPlan(t *testing.T, recs []Record, target Target) *Plan {
	t.Helper()
	p, err := PlanRestore(recs, target)
	if err != nil {
		t.Fatalf("PlanRestore(%+v): %v", target, err)
	}
	checkContiguous(t, p)
	return p
}

func logRange(day string, from, to int) []string {
	var out []string
	for h := from; h <= to; h++ {
		out = append(out, day+"-"+twoDigits(h)+"15-log")
	}
	return out
}

func twoDigits(h int) string { return string([]byte{byte('0' + h/10), byte('0' + h%10)}) }

func TestPlanInsideALog(t *testing.T) {
	s := threeWeeks(t, nil)
	target := at("2025-11-12 14:40") // Wednesday of week 2
	p := mustPlan(t, s.recs, Target{Time: target})
	want := append([]string{"Nov09-0000-full", "Nov12-0000-diff"}, logRange("Nov12", 0, 15)...)
	if got := refs(p); !slices.Equal(got, want) {
		t.Fatalf("plan:\n got %v\nwant %v", got, want)
	}
	if !p.StopAt.Equal(target) || !p.To.Equal(target) {
		t.Errorf("StopAt %v To %v, want %v", p.StopAt, p.To, target)
	}
	// STOPAT is the server's wall-clock time in the zone the covering log recorded.
	st, ok := p.StopAtServerTime()
	if !ok || st.Format("2006-01-02T15:04:05") != "2025-11-12T14:40:00" {
		t.Errorf("StopAtServerTime = %v, %v", st, ok)
	}
	if !p.Earliest.Equal(s.find("Nov02-0000-full").Finish) || !p.Latest.Equal(s.recs[len(s.recs)-1].Finish) {
		t.Errorf("window %v .. %v", p.Earliest, p.Latest)
	}
	if len(p.Notes) != 0 {
		t.Errorf("notes: %v", p.Notes)
	}
}

func TestPlanExactlyAtALogsEnd(t *testing.T) {
	s := threeWeeks(t, nil)
	l := s.find("Nov12-1415-log")
	p := mustPlan(t, s.recs, Target{Time: l.Finish})
	if last := p.Logs[len(p.Logs)-1]; last.Ref != "Nov12-1415-log" {
		t.Errorf("covering log %s, want the one ending exactly at the target", last.Ref)
	}
	if !p.StopAt.Equal(l.Finish) {
		t.Errorf("StopAt %v", p.StopAt)
	}
	// One instant later needs the next log.
	p = mustPlan(t, s.recs, Target{Time: l.Finish.Add(time.Millisecond)})
	if last := p.Logs[len(p.Logs)-1]; last.Ref != "Nov12-1515-log" {
		t.Errorf("covering log %s, want Nov12-1515-log", last.Ref)
	}
}

func TestPlanAtTheEndOfABase(t *testing.T) {
	s := threeWeeks(t, nil)
	d := s.find("Nov12-0000-diff")
	p := mustPlan(t, s.recs, Target{Time: d.Finish})
	if got := refs(p); !slices.Equal(got, []string{"Nov09-0000-full", "Nov12-0000-diff"}) || !p.StopAt.IsZero() || !p.To.Equal(d.Finish) {
		t.Errorf("plan %v stopat %v to %v", got, p.StopAt, p.To)
	}
}

func TestPlanAfterTheLastLog(t *testing.T) {
	s := threeWeeks(t, nil)
	last := s.recs[len(s.recs)-1]
	p := mustPlan(t, s.recs, Target{Time: last.Finish.Add(2 * time.Hour)})
	if got := p.Logs[len(p.Logs)-1]; got.Ref != last.Ref {
		t.Errorf("last log %s, want %s", got.Ref, last.Ref)
	}
	// STOPAT past the last log would leave the database RESTORING: restore to the end.
	if !p.StopAt.IsZero() || !p.To.Equal(last.Finish) {
		t.Errorf("StopAt %v To %v, want no STOPAT and the last log's end", p.StopAt, p.To)
	}
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "the newest log backup, "+last.Ref) {
		t.Errorf("notes %q", p.Notes)
	}
}

func TestPlanLatest(t *testing.T) {
	s := threeWeeks(t, nil)
	p := mustPlan(t, s.recs, Target{Latest: true})
	last := s.recs[len(s.recs)-1]
	if p.Full.Ref != "Nov16-0000-full" || p.Diff.Ref != "Nov22-0000-diff" || p.Logs[len(p.Logs)-1].Ref != last.Ref {
		t.Errorf("plan %v", refs(p))
	}
	if !p.StopAt.IsZero() || !p.To.Equal(last.Finish) || len(p.Notes) != 0 {
		t.Errorf("StopAt %v To %v notes %v", p.StopAt, p.To, p.Notes)
	}
}

func TestPlanBeforeTheFirstFull(t *testing.T) {
	s := threeWeeks(t, nil)
	for _, target := range []time.Time{at("2025-11-01 23:00"), at("2025-11-02 00:05")} { // before it, during it
		_, err := PlanRestore(s.recs, Target{Time: target})
		if !errors.Is(err, ErrNoFull) {
			t.Fatalf("%v: err %v, want ErrNoFull", target, err)
		}
		want := "no full backup of Hartonomous finished at or before " + FormatTime(target) + "; the first one, Nov02-0000-full, finished at 2025-11-02 00:10:00.000 +01:00"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nwant %q", err, want)
		}
	}
	if _, err := PlanRestore(nil, Target{Latest: true}); !errors.Is(err, ErrNoFull) {
		t.Errorf("empty history: %v", err)
	}
}

func TestCopyOnlyFullInTheMiddle(t *testing.T) {
	s := threeWeeks(t, func(s *sim) {
		if h := s.real.In(s.zone); h.Equal(at("2025-11-12 12:00")) {
			s.full(true) // someone takes a copy-only full on Wednesday at noon
		}
	})
	p := mustPlan(t, s.recs, Target{Time: at("2025-11-12 14:40")})
	want := append([]string{"Nov09-0000-full", "Nov12-0000-diff"}, logRange("Nov12", 0, 15)...)
	if got := refs(p); !slices.Equal(got, want) {
		t.Fatalf("plan:\n got %v\nwant %v", got, want)
	}
	// The next day's diff is still based on Sunday's full: a copy-only full is no diff base.
	p = mustPlan(t, s.recs, Target{Time: at("2025-11-13 10:00")})
	if p.Full.Ref != "Nov09-0000-full" || p.Diff == nil || p.Diff.Ref != "Nov13-0000-diff" {
		t.Errorf("plan %v", refs(p))
	}
	// The copy-only full can be restored on its own, by name.
	p = mustPlan(t, s.recs, Target{Ref: "Nov12-1200-full-copy"})
	if got := refs(p); !slices.Equal(got, []string{"Nov12-1200-full-copy"}) {
		t.Errorf("by ref: %v", got)
	}
	if probs := Validate(s.recs); len(probs) != 0 {
		t.Errorf("problems: %v", probs)
	}
}

func TestOnlyCopyOnlyFulls(t *testing.T) {
	s := newSim(t, at("2025-11-02 00:00"))
	s.full(true)
	s.work(time.Hour)
	s.full(true)
	p := mustPlan(t, s.recs, Target{Latest: true})
	if p.Full.Ref != "Nov02-0110-full-copy" || len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "copy-only") {
		t.Errorf("plan %v notes %v", refs(p), p.Notes)
	}
}

// A newer full does not break the log chain: without the second week's full (lost, or
// never copied into this repository) the first week's full, its last diff and every
// log backup since still reach Wednesday of week 2.
func TestSecondFullDoesNotBreakTheLogChain(t *testing.T) {
	s := threeWeeks(t, nil)
	recs := s.without("Nov09-0000-full")
	p := mustPlan(t, recs, Target{Time: at("2025-11-12 14:40")})
	if p.Full.Ref != "Nov02-0000-full" || p.Diff == nil || p.Diff.Ref != "Nov08-0000-diff" {
		t.Fatalf("base %v", refs(p)[:2])
	}
	if p.Logs[0].Ref != "Nov08-0015-log" || p.Logs[len(p.Logs)-1].Ref != "Nov12-1515-log" {
		t.Errorf("logs %s .. %s", p.Logs[0].Ref, p.Logs[len(p.Logs)-1].Ref)
	}
	if want := 24*4 + 16; len(p.Logs) != want { // Saturday to Tuesday, then 00:15..15:15 Wednesday
		t.Errorf("%d logs, want %d", len(p.Logs), want)
	}
	// The week-2 diffs lost their base; Validate says so and finds no gap.
	var orphans int
	for _, pr := range Validate(recs) {
		switch pr.Kind {
		case ProblemOrphanDiff:
			orphans++
		default:
			t.Errorf("unexpected problem %v", pr)
		}
	}
	if orphans != 6 {
		t.Errorf("%d orphan diffs, want 6 (Monday to Saturday of week 2)", orphans)
	}
}

func TestMissingLog(t *testing.T) {
	s := threeWeeks(t, nil)
	recs := s.without("Nov12-0915-log")
	before := s.find("Nov12-0815-log")
	after := s.find("Nov12-1015-log")

	// Before the gap: fine.
	p := mustPlan(t, recs, Target{Time: at("2025-11-12 08:00")})
	if p.Logs[len(p.Logs)-1].Ref != "Nov12-0815-log" {
		t.Errorf("before the gap: %v", refs(p))
	}
	// Across the gap: named precisely.
	_, err := PlanRestore(recs, Target{Time: at("2025-11-12 14:40")})
	var gap *GapError
	if !errors.As(err, &gap) || !errors.Is(err, ErrGap) {
		t.Fatalf("err %v, want a GapError", err)
	}
	if gap.After.Ref != before.Ref || gap.Next.Ref != after.Ref {
		t.Errorf("gap between %s and %s", gap.After.Ref, gap.Next.Ref)
	}
	for _, want := range []string{
		"the log chain of Hartonomous is broken after Nov12-0815-log (log, LSN ",
		"no log backup starts at LSN " + before.LastLSN.String(),
		"the next log backup, Nov12-1015-log",
		"log backups covering LSN " + before.LastLSN.String() + ".." + after.FirstLSN.String() + " are missing",
		"the latest point reachable is 2025-11-12 08:16:00.000 +01:00",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// Latest also refuses rather than silently stopping before the gap... unless a newer
	// diff bridges it, which Thursday's does.
	p = mustPlan(t, recs, Target{Time: at("2025-11-13 10:00")})
	if p.Diff.Ref != "Nov13-0000-diff" {
		t.Errorf("Thursday: %v", refs(p))
	}
	// A log backup can be restored up to by name only if the chain reaches it.
	if _, err := PlanRestore(recs, Target{Ref: "Nov12-1115-log"}); !errors.Is(err, ErrGap) || !strings.Contains(err.Error(), "Nov12-1115-log cannot be reached from Nov12-0000-diff") {
		t.Errorf("by ref across the gap: %v", err)
	}

	probs := Validate(recs)
	if len(probs) != 1 || probs[0].Kind != ProblemGap || probs[0].Severity != SeverityError {
		t.Fatalf("problems %v", probs)
	}
	if pr := probs[0]; pr.Records[0].Ref != before.Ref || pr.Records[1].Ref != after.Ref ||
		!strings.Contains(pr.Msg, "after Nov12-0815-log") || !strings.Contains(pr.Msg, before.LastLSN.String()+".."+after.FirstLSN.String()) {
		t.Errorf("problem %v", pr)
	}
}

func TestGapRightAfterTheFull(t *testing.T) {
	s := newSim(t, at("2025-11-02 00:00"))
	s.full(false)
	s.work(time.Hour)
	s.log(false) // lost
	s.work(time.Hour)
	s.log(false)
	recs := s.without(s.recs[1].Ref)
	_, err := PlanRestore(recs, Target{Latest: true})
	var gap *GapError
	if !errors.As(err, &gap) || gap.After.Ref != s.recs[0].Ref || gap.Next.Ref != s.recs[2].Ref {
		t.Fatalf("err %v", err)
	}
	if probs := Validate(recs); len(probs) != 1 || probs[0].Kind != ProblemGap {
		t.Errorf("problems %v", probs)
	}
}

func TestByRef(t *testing.T) {
	s := threeWeeks(t, nil)
	p := mustPlan(t, s.recs, Target{Ref: "Nov12-0000-diff"})
	if got := refs(p); !slices.Equal(got, []string{"Nov09-0000-full", "Nov12-0000-diff"}) || !p.StopAt.IsZero() {
		t.Errorf("diff: %v", got)
	}
	p = mustPlan(t, s.recs, Target{Ref: "Nov12-0615-log"})
	if got := refs(p); got[len(got)-1] != "Nov12-0615-log" || p.Diff.Ref != "Nov12-0000-diff" || !p.StopAt.IsZero() || !p.To.Equal(s.find("Nov12-0615-log").Finish) {
		t.Errorf("log: %v, stopat %v", got, p.StopAt)
	}
	if _, err := PlanRestore(s.recs, Target{Ref: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown ref: %v", err)
	}
	recs := s.without("Nov09-0000-full")
	if _, err := PlanRestore(recs, Target{Ref: "Nov12-0000-diff"}); !errors.Is(err, ErrNoFull) || !strings.Contains(err.Error(), "not in the history") {
		t.Errorf("diff without its full: %v", err)
	}
}

func TestSimpleRecoveryHasNoLogs(t *testing.T) {
	s := newSim(t, at("2025-11-02 00:00"))
	s.full(false)
	for d := 1; d <= 3; d++ {
		s.workUntil(at("2025-11-02 00:00").AddDate(0, 0, d))
		s.diff()
	}
	p := mustPlan(t, s.recs, Target{Time: at("2025-11-04 10:00")})
	if got := refs(p); !slices.Equal(got, []string{"Nov02-0000-full", "Nov04-0000-diff"}) || !p.StopAt.IsZero() {
		t.Errorf("plan %v", got)
	}
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "no log backup follows Nov04-0000-diff") {
		t.Errorf("notes %v", p.Notes)
	}
}

// Two point-in-time restores in week 1 make three recovery forks whose LSN ranges
// overlap. Each target follows the fork that was live at that time.
func TestRecoveryForks(t *testing.T) {
	const f2, f3 = "B2B2B2B2-0000-0000-0000-000000000002", "C3C3C3C3-0000-0000-0000-000000000003"
	var firstFork LSN
	s := newSim(t, at("2025-11-02 00:00"))
	s.run(7, func(s *sim) {
		switch s.real.In(s.zone) {
		case at("2025-11-04 12:00"): // Tuesday noon: back to 10:40, inside the 11:15 log
			cov := s.find("Nov04-1115-log")
			x := lsnBetween(cov.FirstLSN, cov.LastLSN, 25, 60) // 10:40 is 25 of the 60 minutes
			firstFork = x
			s.restore(cov, x, f2)
		case at("2025-11-06 09:00"): // Thursday 09:00: back to 07:50 on fork 2
			cov := s.find("Nov06-0815-log")
			s.restore(cov, lsnBetween(cov.FirstLSN, cov.LastLSN, 35, 60), f3)
		}
	})
	oldCover := s.find("Nov04-1115-log")
	crossing := s.find("Nov04-1215-log")
	if crossing.FirstForkGUID != s.recs[0].LastForkGUID || crossing.LastForkGUID != f2 || crossing.FirstLSN.Cmp(oldCover.FirstLSN) != 0 {
		t.Fatalf("simulation: crossing log %+v", crossing)
	}

	// Before the first restore happened, on the first fork: the old 11:15 log covers it.
	p := mustPlan(t, s.recs, Target{Time: at("2025-11-04 10:50")})
	if got := p.Logs[len(p.Logs)-1]; got.Ref != "Nov04-1115-log" || got.LastForkGUID != s.recs[0].LastForkGUID {
		t.Errorf("10:50 Tuesday: covering log %s on %s", got.Ref, got.LastForkGUID)
	}
	// After it: through the log that crosses to fork 2.
	p = mustPlan(t, s.recs, Target{Time: at("2025-11-04 13:00")})
	n := len(p.Logs)
	if p.Logs[n-2].Ref != "Nov04-1215-log" || p.Logs[n-1].Ref != "Nov04-1315-log" || p.Logs[n-1].LastForkGUID != f2 {
		t.Errorf("13:00 Tuesday: %v", refs(p)[len(refs(p))-3:])
	}
	for _, l := range p.Logs {
		if l.Ref == "Nov04-1115-log" {
			t.Errorf("the abandoned fork's 11:15 log is in the plan")
		}
	}
	// Thursday's diff was taken on fork 2; Thursday 08:10 is on fork 2, before the second restore.
	p = mustPlan(t, s.recs, Target{Time: at("2025-11-06 08:10")})
	if p.Diff.Ref != "Nov06-0000-diff" || p.Diff.LastForkGUID != f2 || p.Logs[len(p.Logs)-1].Ref != "Nov06-0815-log" || p.Logs[len(p.Logs)-1].LastForkGUID != f2 {
		t.Errorf("Thursday 08:10: %v", refs(p))
	}
	if len(p.Notes) != 0 {
		t.Errorf("Thursday 08:10: notes %v", p.Notes)
	}
	// 08:30 falls after fork 2's last log backup (08:16) and before fork 3's first one
	// (09:16): the restore to fork 3 happened in between, at a time msdb does not hold.
	// The plan follows fork 3 and says how to reach fork 2's last point instead.
	p = mustPlan(t, s.recs, Target{Time: at("2025-11-06 08:30")})
	if last := p.Logs[len(p.Logs)-1]; last.Ref != "Nov06-0915-log" || last.LastForkGUID != f3 {
		t.Errorf("Thursday 08:30: %v", refs(p))
	}
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "Nov06-0815-log") || !strings.Contains(p.Notes[0], "2025-11-06 08:16:00.000 +01:00") {
		t.Errorf("Thursday 08:30: notes %q", p.Notes)
	}
	// Latest follows fork 3 to the end.
	p = mustPlan(t, s.recs, Target{Latest: true})
	if last := p.Logs[len(p.Logs)-1]; last.LastForkGUID != f3 || last.Ref != s.recs[len(s.recs)-1].Ref {
		t.Errorf("latest ends with %s on %s", last.Ref, last.LastForkGUID)
	}

	var forks []string
	for _, pr := range Validate(s.recs) {
		if pr.Kind != ProblemFork || pr.Severity != SeverityWarning {
			t.Errorf("unexpected problem %v", pr)
			continue
		}
		forks = append(forks, pr.Msg)
	}
	if len(forks) != 2 || !strings.Contains(forks[0], f2) || !strings.Contains(forks[0], "fork point LSN "+firstFork.String()) || !strings.Contains(forks[1], f3) {
		t.Errorf("forks %q", forks)
	}
}

func lsnBetween(a, b LSN, num, den int64) LSN {
	d := new(big.Int).Sub(b.Big(), a.Big())
	d.Mul(d, big.NewInt(num)).Div(d, big.NewInt(den))
	l, _ := LSNFromBig(d.Add(d, a.Big()))
	return l
}

// The server clock is set back 30 hours on Wednesday at noon: backups taken after it
// carry earlier dates than backups taken before. The chain follows LSNs.
func TestClockChange(t *testing.T) {
	s := newSim(t, at("2025-11-02 00:00"))
	s.run(5, func(s *sim) { // Sunday to Thursday night
		if s.real.In(s.zone).Equal(at("2025-11-05 12:00")) {
			s.skew = -30 * time.Hour
		}
	})
	wed, thu := s.find("Nov05-0000-diff"), s.find("Nov04-1800-diff") // Thursday 00:00, stamped Tuesday 18:00
	if !thu.Finish.Before(wed.Finish) || thu.LastLSN.Cmp(wed.LastLSN) <= 0 {
		t.Fatalf("simulation: diffs %v/%s and %v/%s", wed.Finish, wed.LastLSN, thu.Finish, thu.LastLSN)
	}
	p := mustPlan(t, s.recs, Target{Latest: true})
	if p.Diff.Ref != thu.Ref {
		t.Errorf("latest diff %s, want %s (higher LSN, earlier date)", p.Diff.Ref, thu.Ref)
	}
	if p.Logs[len(p.Logs)-1].Ref != s.recs[len(s.recs)-1].Ref {
		t.Errorf("latest does not reach the last log")
	}

	// Wednesday 11:30 by the clock happened twice. Both diffs are stamped before it;
	// the one with the higher LSN wins.
	target := at("2025-11-05 11:30")
	p = mustPlan(t, s.recs, Target{Time: target})
	if p.Diff.Ref != thu.Ref {
		t.Fatalf("diff %s", p.Diff.Ref)
	}
	// Without Thursday's diff, the chain from Wednesday's runs in LSN order through
	// logs stamped Tuesday until the first one that ends at or after 11:30.
	p = mustPlan(t, s.without(thu.Ref), Target{Time: target})
	if p.Diff.Ref != wed.Ref {
		t.Fatalf("diff %s", p.Diff.Ref)
	}
	backwards := false
	for i, l := range p.Logs {
		last := i == len(p.Logs)-1
		if ends := !l.Finish.Before(target); ends != last {
			t.Errorf("log %s (finished %v): ends at or after the target = %v, but it is %s", l.Ref, l.Finish, ends, map[bool]string{true: "the last", false: "not the last"}[last])
		}
		if i > 0 && l.Finish.Before(p.Logs[i-1].Finish) {
			backwards = true
		}
	}
	if !backwards {
		t.Error("the plan's log dates never go backwards: the test proves nothing")
	}
	if got := p.Logs[len(p.Logs)-1].Ref; got != "Nov05-1215-log" { // Thursday 18:15, stamped Wednesday 12:15
		t.Errorf("covering log %s", got)
	}

	// Sorting by date would interleave the logs; SortByLSN does not.
	var logs []*Record
	for i := range s.recs {
		if s.recs[i].Type == Log {
			logs = append(logs, &s.recs[i])
		}
	}
	byDate := slices.Clone(logs)
	slices.SortStableFunc(byDate, func(a, b *Record) int { return a.Finish.Compare(b.Finish) })
	SortByLSN(logs)
	if slices.Equal(byDate, logs) {
		t.Fatal("simulation: dates and LSNs agree")
	}
	for i := 1; i < len(logs); i++ {
		if logs[i-1].LastLSN.Cmp(logs[i].FirstLSN) != 0 {
			t.Fatalf("SortByLSN: %s then %s", logs[i-1].Ref, logs[i].Ref)
		}
	}
	last := logs[len(logs)-1]
	p = mustPlan(t, s.recs, Target{Ref: last.Ref})
	if p.Logs[len(p.Logs)-1].Ref != last.Ref || p.Diff.Ref != thu.Ref {
		t.Errorf("by ref: %v", refs(p))
	}
}

func findPtr(rs []*Record, ref string) *Record {
	for _, r := range rs {
		if r.Ref == ref {
			return r
		}
	}
	return nil
}

func TestDuplicateRecordsAreOneBackup(t *testing.T) {
	s := threeWeeks(t, nil)
	recs := append(slices.Clone(s.recs), s.find("Nov12-0515-log"))
	recs[len(recs)-1].Ref = "Nov12-0515-log-mirror"
	p := mustPlan(t, recs, Target{Time: at("2025-11-12 14:40")})
	if len(p.Logs) != 16 {
		t.Errorf("%d logs", len(p.Logs))
	}
}

func TestRecreatedDatabase(t *testing.T) {
	s := newSim(t, at("2025-11-02 00:00"))
	s.full(false)
	s.work(time.Hour)
	s.log(false)
	// DROP DATABASE, CREATE DATABASE: a new database_guid, a new LSN range.
	s.dbGUID, s.archive, s.fullCkpt = "11111111-2222-3333-4444-555555555555", LSN{}, LSN{}
	s.lsn = big.NewInt(31_000_000_001_000_001)
	s.work(time.Hour)
	s.full(false)
	s.work(time.Hour)
	s.log(false)
	p := mustPlan(t, s.recs, Target{Latest: true})
	if p.Full.DatabaseGUID != s.dbGUID || len(p.Logs) != 1 || p.Logs[0].DatabaseGUID != s.dbGUID {
		t.Errorf("plan %v", refs(p))
	}
	p = mustPlan(t, s.recs, Target{Time: s.recs[1].Finish})
	if p.Full.Ref != s.recs[0].Ref || p.Logs[0].Ref != s.recs[1].Ref {
		t.Errorf("old incarnation: %v", refs(p))
	}
	probs := Validate(s.recs)
	if len(probs) != 1 || probs[0].Kind != ProblemRecreated {
		t.Errorf("problems %v", probs)
	}
}

func TestBadRecords(t *testing.T) {
	good := Record{Database: "d", Type: Full, FirstLSN: MustLSN("10"), LastLSN: MustLSN("20"), CheckpointLSN: MustLSN("11"), Finish: at("2025-11-02 00:00"), Ref: "x"}
	for name, mut := range map[string]func(*Record){
		"type":       func(r *Record) { r.Type = "file" },
		"no lsn":     func(r *Record) { r.LastLSN = LSN{} },
		"backwards":  func(r *Record) { r.LastLSN = MustLSN("5") },
		"checkpoint": func(r *Record) { r.CheckpointLSN = LSN{} },
		"finish":     func(r *Record) { r.Finish = time.Time{} },
		"diff base":  func(r *Record) { r.Type = Diff },
	} {
		r := good
		mut(&r)
		if _, err := PlanRestore([]Record{r}, Target{Latest: true}); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: %v", name, err)
		}
		if probs := Validate([]Record{r}); len(probs) != 1 || probs[0].Kind != ProblemBadRecord {
			t.Errorf("%s: validate %v", name, probs)
		}
	}
	other := good
	other.Database = "e"
	if _, err := PlanRestore([]Record{good, other}, Target{Latest: true}); !errors.Is(err, ErrBadRecord) {
		t.Errorf("mixed databases: %v", err)
	}
	dam := good
	dam.Damaged = true
	if probs := Validate([]Record{dam}); len(probs) != 1 || probs[0].Kind != ProblemDamaged {
		t.Errorf("damaged: %v", probs)
	}
}

func TestLSN(t *testing.T) {
	big25 := "9999999999999999999999999" // numeric(25,0)'s largest value, far past 2^64
	for _, c := range []struct {
		in, want string
		err      bool
	}{
		{"34000000012300001", "34000000012300001", false},
		{"0034", "34", false},
		{"0", "0", false},
		{"000", "0", false},
		{big25, big25, false},
		{"", "", false},
		{"1" + big25, "", true},
		{"-1", "", true},
		{"12a", "", true},
		{"1.5", "", true},
	} {
		l, err := ParseLSN(c.in)
		if (err != nil) != c.err || (err == nil && l.String() != c.want) {
			t.Errorf("ParseLSN(%q) = %q, %v", c.in, l, err)
		}
	}
	a, b, z := MustLSN("99999999999999999999"), MustLSN("100000000000000000000"), LSN{}
	if a.Cmp(b) != -1 || b.Cmp(a) != 1 || a.Cmp(MustLSN("0099999999999999999999")) != 0 || z.Cmp(MustLSN("0")) != -1 || z.Cmp(z) != 0 {
		t.Error("Cmp")
	}
	if MustLSN("0").IsZero() || !z.IsZero() {
		t.Error("IsZero: 0 is a number, not an absent LSN")
	}
	if got := b.Big().String(); got != b.String() {
		t.Errorf("Big %s", got)
	}
	v, bl, sl := MustLSN("34000000012300001").Parts()
	if v != "34" || bl != "123" || sl != "1" {
		t.Errorf("Parts %s:%s:%s", v, bl, sl)
	}
	if got := MustLSN("5").Describe(); got != "5 (0:0:5)" {
		t.Errorf("Describe %q", got)
	}
	if _, err := LSNFromBig(big.NewInt(-3)); err == nil {
		t.Error("negative big")
	}

	type doc struct {
		A LSN `json:"a"`
		B LSN `json:"b"`
	}
	raw, err := json.Marshal(doc{A: MustLSN(big25)})
	if err != nil || string(raw) != `{"a":"`+big25+`","b":null}` {
		t.Fatalf("marshal %s %v", raw, err)
	}
	var d doc
	if err := json.Unmarshal([]byte(`{"a":"`+big25+`","b":123}`), &d); err != nil || d.A.String() != big25 || d.B.String() != "123" {
		t.Errorf("unmarshal %+v %v", d, err)
	}
	if err := json.Unmarshal([]byte(`{"a":"x"}`), &d); err == nil {
		t.Error("unmarshal of a bad LSN succeeded")
	}
}

func TestRecordJSONKeepsZoneAndLSNs(t *testing.T) {
	s := threeWeeks(t, nil)
	r := s.find("Nov12-0515-log")
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"backup_finish_date":"2025-11-12T05:16:00+01:00"`) || !strings.Contains(string(raw), `"first_lsn":"`+r.FirstLSN.String()+`"`) {
		t.Errorf("json %s", raw)
	}
	var back Record
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	back.Ref = r.Ref
	if back.FirstLSN != r.FirstLSN || !back.Finish.Equal(r.Finish) || back.Finish.Format("-07:00") != "+01:00" {
		t.Errorf("round trip %+v", back)
	}
}

func TestTypeFromMSDB(t *testing.T) {
	for in, want := range map[string]Type{"D": Full, "I": Diff, "L": Log, " d ": Full} {
		if got, err := TypeFromMSDB(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := TypeFromMSDB("F"); err == nil {
		t.Error("file backups are not planned")
	}
}
