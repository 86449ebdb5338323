package postgres

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/testutil/pgtest"
)

var waldumpCommit = regexp.MustCompile(`desc: (?:COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \w+)`)

// TestCommitTimesMatchWaldump compares the commit times found in real segments
// with pg_waldump's reading of them.
func TestCommitTimesMatchWaldump(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.SQL("postgres", "CREATE TABLE t (i int, s text)")
	for i := 0; i < 30; i++ {
		// Rows big enough that commit records land across page boundaries.
		c.SQL("postgres", "INSERT INTO t SELECT g, repeat('x', 3000) FROM generate_series(1, 200) g")
	}
	c.SQL("postgres", "BEGIN; INSERT INTO t VALUES (1, 'rolled back'); ROLLBACK;")
	c.SQL("postgres", "SELECT pg_switch_wal()")
	segs, _ := filepath.Glob(filepath.Join(c.DataDir, "pg_wal", "0000000*"))
	checked := 0
	for _, seg := range segs {
		if len(filepath.Base(seg)) != 24 {
			continue
		}
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		first, last, ok, err := CommitTimes(data)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command(filepath.Join(c.Bin, "pg_waldump"), seg).CombinedOutput()
		ms := waldumpCommit.FindAllStringSubmatch(string(out), -1)
		var want []time.Time
		for _, m := range ms {
			tm, err := time.Parse("2006-01-02 15:04:05.999999 MST", m[1])
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, tm)
		}
		if len(want) == 0 {
			if ok {
				t.Errorf("%s: pg_waldump sees no commit, we found %v..%v", filepath.Base(seg), first, last)
			}
			continue
		}
		// pg_waldump reads a record continued from the previous segment too; we skip
		// it, so allow our first to be later, but the last must agree.
		if !ok || !last.Equal(want[len(want)-1]) {
			t.Errorf("%s: last commit %v (found %v), pg_waldump says %v", filepath.Base(seg), last, ok, want[len(want)-1])
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no segment with commits checked")
	}
	if !strings.Contains(filepath.Base(segs[0]), "0000000") {
		t.Fatal("unexpected segment names")
	}
}
