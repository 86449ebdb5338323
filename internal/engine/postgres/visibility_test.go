package postgres

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/hartonomous/hartvault/internal/fstree"
	"github.com/hartonomous/hartvault/internal/repo"
)

func TestPageRuns(t *testing.T) {
	r := mergeRuns([][2]uint32{{10, 20}, {0, 3}, {3, 5}, {18, 25}, {40, 41}})
	want := pageRuns{0, 5, 10, 25, 40, 41}
	if !equalRuns(r, want) {
		t.Fatalf("merged %v, want %v", r, want)
	}
	for page, in := range map[uint32]bool{0: true, 4: true, 5: false, 9: false, 10: true, 24: true, 25: false, 40: true, 41: false, 1000: false} {
		if r.has(page) != in {
			t.Errorf("has(%d) = %v", page, !in)
		}
	}
	if (pageRuns(nil)).has(0) {
		t.Error("empty runs hold page 0")
	}
}

func equalRuns(a, b pageRuns) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The recorder sees a file's pages in ranges written in pieces of any size, as the
// pack writer reads them, and lists exactly the pages whose copy carries
// PD_ALL_VISIBLE.
func TestFlagRecorderSeesEveryPage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const pages = 700
	data := make([]byte, pages*blockSize+100) // a trailing partial page is ignored
	want := map[uint32]bool{}
	for p := 0; p < pages; p++ {
		page := data[p*blockSize : (p+1)*blockSize]
		for i := range page {
			page[i] = byte(rng.Uint32())
		}
		flags := binary.LittleEndian.Uint16(page[10:12]) &^ pdAllVisible
		// Runs, so that merging across ranges matters.
		if (p/37)%2 == 0 || rng.IntN(10) == 0 {
			flags |= pdAllVisible
			want[uint32(p)] = true
		}
		binary.LittleEndian.PutUint16(page[10:12], flags)
	}
	fr := newFlagRecorder()
	en := &fstree.Entry{File: repo.File{Path: "base/5/16384"}}
	const rangePages = 128
	for off := 0; off < len(data); off += rangePages * blockSize {
		w := fr.tap(en, int64(off))
		src := bytes.NewReader(data[off:min(off+rangePages*blockSize, len(data))])
		for {
			n := 1 + rng.IntN(20000)
			if _, err := io.CopyN(w, src, int64(n)); err != nil {
				break
			}
		}
	}
	if fr.tap(&fstree.Entry{File: repo.File{Path: "base/5/16384_vm"}}, 0) != nil {
		t.Error("the visibility map fork was tapped")
	}
	if fr.tap(&fstree.Entry{File: repo.File{Path: "PG_VERSION"}}, 0) != nil {
		t.Error("a non-relation file was tapped")
	}
	got := fr.finish()["base/5/16384"]
	for p := uint32(0); p < pages+2; p++ {
		if got.has(p) != want[p] {
			t.Fatalf("page %d: recorded %v, want %v (runs %v)", p, got.has(p), want[p], got)
		}
	}
}
