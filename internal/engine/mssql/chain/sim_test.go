package chain

import (
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"
)

// sim produces the msdb history of one database the way SQL Server writes it: LSNs
// grow with activity, full and differential backups cover a range of the log, each
// log backup starts where the previous one ended, a point-in-time restore starts a new
// recovery fork. Times are the server's wall clock, which a test can set back.
type sim struct {
	t       *testing.T
	db      string
	dbGUID  string
	fork    string
	real    time.Time     // true time
	skew    time.Duration // wall clock = real + skew
	zone    *time.Location
	lsn     *big.Int
	archive LSN // where the next log backup starts; zero until a full starts the chain
	// fullCkpt is the checkpoint LSN of the last non-copy-only full (the diff base).
	fullCkpt  LSN
	fullGUID  string
	crossFrom string // set after a restore: the next log backup crosses from this fork
	forkPoint LSN
	recs      []Record
	n         int
}

func newSim(t *testing.T, start time.Time) *sim {
	return &sim{
		t: t, db: "Hartonomous", dbGUID: "6F9619FF-8B86-D011-B42D-00C04FC964FF", fork: "A1A1A1A1-0000-0000-0000-000000000001",
		real: start, zone: start.Location(),
		// 34:123:1 as msdb stores it; LSNs quickly pass 2^64 once VLF numbers are large.
		lsn: new(big.Int).SetUint64(34_000_000_012_300_001),
	}
}

func (s *sim) wall() time.Time { return s.real.Add(s.skew).In(s.zone) }

func (s *sim) cur() LSN {
	l, err := LSNFromBig(s.lsn)
	if err != nil {
		s.t.Fatal(err)
	}
	return l
}

// work advances time and the log: about 1.7 million LSN units a minute.
func (s *sim) work(d time.Duration) {
	s.real = s.real.Add(d)
	s.lsn.Add(s.lsn, big.NewInt(int64(d/time.Minute)*1_700_003+1))
}

func (s *sim) rec(typ Type, copyOnly bool) Record {
	s.n++
	return Record{
		Database: s.db, Type: typ, CopyOnly: copyOnly, DatabaseGUID: s.dbGUID,
		FirstForkGUID: s.fork, LastForkGUID: s.fork, BackupSetID: int64(s.n),
		BackupSetGUID: fmt.Sprintf("00000000-0000-0000-0000-%012d", s.n),
		RecoveryModel: "FULL", Checksums: true,
	}
}

func (s *sim) name(typ Type, copyOnly bool) string {
	n := s.wall().Format("Jan02-1504") + "-" + string(typ)
	if copyOnly {
		n += "-copy"
	}
	for _, r := range s.recs {
		if r.Ref == n {
			return n + "'" // the wall clock went back: the name is taken
		}
	}
	return n
}

func (s *sim) add(r Record) *Record {
	s.recs = append(s.recs, r)
	return &s.recs[len(s.recs)-1]
}

func (s *sim) full(copyOnly bool) Record {
	r := s.rec(Full, copyOnly)
	r.Ref = s.name(Full, copyOnly)
	r.Start = s.wall()
	r.FirstLSN = s.cur()
	s.work(time.Minute)
	r.CheckpointLSN = s.cur()
	r.DatabaseBackupLSN = s.fullCkpt
	s.work(9 * time.Minute)
	r.LastLSN = s.cur()
	r.Finish = s.wall()
	r.Size, r.CompressedSize = 40<<30, 9<<30
	if !copyOnly {
		s.fullCkpt, s.fullGUID = r.CheckpointLSN, r.BackupSetGUID
		if s.archive.IsZero() {
			s.archive = r.FirstLSN // the log chain starts with the first full
		}
	}
	s.add(r)
	return r
}

func (s *sim) diff() Record {
	r := s.rec(Diff, false)
	r.Ref = s.name(Diff, false)
	r.Start = s.wall()
	r.FirstLSN = s.cur()
	s.work(time.Minute)
	r.CheckpointLSN = s.cur()
	r.DatabaseBackupLSN, r.DifferentialBaseLSN, r.DifferentialBaseGUID = s.fullCkpt, s.fullCkpt, s.fullGUID
	s.work(2 * time.Minute)
	r.LastLSN = s.cur()
	r.Finish = s.wall()
	s.add(r)
	return r
}

func (s *sim) log(copyOnly bool) Record {
	r := s.rec(Log, copyOnly)
	r.Ref = s.name(Log, copyOnly)
	r.Start = s.wall()
	r.FirstLSN = s.archive
	s.work(time.Minute)
	r.LastLSN = s.cur()
	r.Finish = s.wall()
	if s.crossFrom != "" {
		r.FirstForkGUID, r.ForkPointLSN = s.crossFrom, s.forkPoint
		if !copyOnly {
			s.crossFrom = ""
		}
	}
	if !copyOnly {
		s.archive = r.LastLSN
	}
	s.add(r)
	return r
}

// restore simulates RESTORE ... WITH STOPAT at x, inside log backup covering, with
// RECOVERY: the database continues from x on a new fork; its next log backup starts
// where the last completely restored log backup ended (covering.FirstLSN) and crosses
// from the old fork to the new one at x.
func (s *sim) restore(covering Record, x LSN, newFork string) {
	s.crossFrom, s.forkPoint = s.fork, x
	s.fork = newFork
	s.archive = covering.FirstLSN
	s.lsn = x.Big()
	s.work(time.Minute)
}

// run follows the production schedule from now for days days: a full at 00:00 on
// Sundays, a differential at 00:00 on other days, a log backup at a quarter past every
// hour. hook runs at the start of each hour (real time) and may take extra backups.
func (s *sim) run(days int, hook func(s *sim)) {
	end := s.real.Add(time.Duration(days) * 24 * time.Hour)
	for s.real.Before(end) {
		hour := s.real.In(s.zone)
		if hook != nil {
			hook(s)
		}
		if hour.Hour() == 0 {
			if hour.Weekday() == time.Sunday {
				s.full(false)
			} else if s.fullCkpt.Cmp(LSN{}) != 0 {
				s.diff()
			}
		}
		s.workUntil(hour.Add(15 * time.Minute))
		s.log(false)
		s.workUntil(hour.Add(time.Hour))
	}
}

func (s *sim) workUntil(t time.Time) {
	if d := t.Sub(s.real); d > 0 {
		s.work(d)
	}
}

func (s *sim) find(ref string) Record {
	s.t.Helper()
	for _, r := range s.recs {
		if r.Ref == ref {
			return r
		}
	}
	s.t.Fatalf("no record %s", ref)
	return Record{}
}

func (s *sim) without(refs ...string) []Record {
	var out []Record
outer:
	for _, r := range s.recs {
		for _, x := range refs {
			if r.Ref == x {
				continue outer
			}
		}
		out = append(out, r)
	}
	if len(out) != len(s.recs)-len(refs) {
		s.t.Fatalf("without %v: removed %d records", refs, len(s.recs)-len(out))
	}
	return out
}

// refs lists the plan's backups in restore order.
func refs(p *Plan) []string {
	var out []string
	for _, r := range p.Records() {
		out = append(out, r.Ref)
	}
	return out
}

// checkContiguous asserts the plan is a valid restore sequence: the first log spans the
// base's last LSN, each next log starts where the previous one ended, on its fork.
func checkContiguous(t *testing.T, p *Plan) {
	t.Helper()
	base := p.Full
	if p.Diff != nil {
		if p.Diff.DatabaseBackupLSN.Cmp(p.Full.CheckpointLSN) != 0 {
			t.Errorf("diff %s is not based on full %s", p.Diff.Ref, p.Full.Ref)
		}
		base = p.Diff
	}
	if len(p.Logs) == 0 {
		return
	}
	l0 := p.Logs[0]
	if !(l0.FirstLSN.Cmp(base.LastLSN) <= 0 && base.LastLSN.Cmp(l0.LastLSN) < 0) {
		t.Errorf("first log %s (%s..%s) does not span base %s last LSN %s", l0.Ref, l0.FirstLSN, l0.LastLSN, base.Ref, base.LastLSN)
	}
	for i := 1; i < len(p.Logs); i++ {
		a, b := p.Logs[i-1], p.Logs[i]
		if a.LastLSN.Cmp(b.FirstLSN) != 0 || !strings.EqualFold(a.LastForkGUID, b.FirstForkGUID) {
			t.Errorf("log %s (ends %s, fork %s) is not followed by %s (starts %s, fork %s)", a.Ref, a.LastLSN, a.LastForkGUID, b.Ref, b.FirstLSN, b.FirstForkGUID)
		}
	}
}
