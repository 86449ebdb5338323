package postgres

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hartonomous/hartvault/internal/testutil/pgtest"
)

// TestPageChecksumMatchesPostgres checks our checksum against every page of a real
// cluster initialised with data checksums.
func TestPageChecksumMatchesPostgres(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{Checksums: true})
	c.SQL("postgres", "CREATE TABLE t AS SELECT g, repeat('x', g % 100) AS s FROM generate_series(1, 20000) g; CHECKPOINT;")
	pages, checked := 0, 0
	filepath.WalkDir(filepath.Join(c.DataDir, "base"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(c.DataDir, p)
		rf, ok := parseRelFile(filepath.ToSlash(rel))
		if !ok {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i := 0; i+blockSize <= len(b); i += blockSize {
			page := b[i : i+blockSize]
			pages++
			if allZero(page) {
				continue
			}
			blk := uint32(rf.segno*relSegPages + i/blockSize)
			if got, want := pageChecksum(page, blk), storedChecksum(page); got != want {
				t.Fatalf("%s block %d: checksum %04x, page says %04x", rel, blk, got, want)
			}
			checked++
		}
		return nil
	})
	if checked < 100 {
		t.Fatalf("only %d of %d pages checked", checked, pages)
	}
	// A flipped bit changes the checksum.
	b, _ := os.ReadFile(filepath.Join(c.DataDir, "global", "1262"))
	page := b[:blockSize]
	sum := pageChecksum(page, 0)
	page[500] ^= 1
	if pageChecksum(page, 0) == sum {
		t.Fatal("a flipped bit kept the checksum")
	}
}

func TestParseRelFile(t *testing.T) {
	for _, c := range []struct {
		p    string
		ok   bool
		fork string
		seg  int
		temp bool
	}{
		{"base/5/16384", true, "", 0, false},
		{"base/5/16384.3", true, "", 3, false},
		{"base/5/16384_vm", true, "vm", 0, false},
		{"base/5/16384_init", true, "init", 0, false},
		{"base/5/t3_16390", true, "", 0, true},
		{"global/1262", true, "", 0, false},
		{"pg_tblspc/16400/PG_15_202209061/5/16401_fsm.1", true, "fsm", 1, false},
		{"global/pg_control", false, "", 0, false},
		{"base/5/PG_VERSION", false, "", 0, false},
		{"base/5/pg_filenode.map", false, "", 0, false},
		{"pg_xact/0000", false, "", 0, false},
	} {
		rf, ok := parseRelFile(c.p)
		if ok != c.ok || ok && (rf.fork != c.fork || rf.segno != c.seg || rf.temp != c.temp) {
			t.Errorf("%s: %+v %v", c.p, rf, ok)
		}
	}
}
