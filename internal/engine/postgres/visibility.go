package postgres

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/hartonomous/hartvault/internal/fstree"
	"github.com/hartonomous/hartvault/internal/repo"
)

// Why a diff needs more than page LSNs (docs/postgres.md has the whole argument):
//
//   - Clearing a visibility-map bit does not move the VM page's LSN (replay of the
//     heap record clears it), so a VM page can change with its LSN unchanged: diffs
//     store the VM whole (it is 1/32768 of its heap).
//   - Setting PD_ALL_VISIBLE on a heap page moves the page's LSN only when hint bits
//     are WAL-logged (data checksums or wal_log_hints). Without that, a page a VACUUM
//     marked all-visible after the full keeps its LSN, and the full's copy lacks the
//     flag: restored beside the diff's VM, the map would say all-visible while the
//     page does not, and the next change to the page would not clear the map. So a
//     full records which of its pages carry PD_ALL_VISIBLE, and a diff stores every
//     page whose flag differs from the full's copy, whatever its LSN.

// Backup schemes. A backup records the scheme it was taken with; diffs of scheme 0
// (hartvault before the visibility map was stored whole) are restored without
// their visibility maps.
const (
	schemeLSNOnly = 0 // diffs took every fork page by page by LSN; fulls recorded no flags
	schemeExact   = 1 // diffs: only main forks by LSN and flags; fulls record PD_ALL_VISIBLE
)

// pdAllVisible is PD_ALL_VISIBLE in pd_flags (src/include/storage/bufpage.h).
const pdAllVisible = 0x0004

func allVisibleFlag(page []byte) bool {
	return binary.LittleEndian.Uint16(page[10:12])&pdAllVisible != 0
}

// pageRuns lists page numbers as sorted, disjoint [start, end) runs, flattened
// (start0, end0, start1, end1, ...) to keep manifests small: a vacuumed table is a
// few runs per segment.
type pageRuns []uint32

func (r pageRuns) has(page uint32) bool {
	// The first run whose end is past page.
	i := sort.Search(len(r)/2, func(i int) bool { return r[2*i+1] > page })
	return i < len(r)/2 && r[2*i] <= page
}

// mergeRuns sorts and joins runs.
func mergeRuns(runs [][2]uint32) pageRuns {
	sort.Slice(runs, func(i, j int) bool { return runs[i][0] < runs[j][0] })
	var out pageRuns
	for _, x := range runs {
		if n := len(out); n > 0 && out[n-1] >= x[0] {
			out[n-1] = max(out[n-1], x[1])
			continue
		}
		out = append(out, x[0], x[1])
	}
	return out
}

// flagRecorder collects, while a full backup stores them, which pages of each
// main-fork relation file carry PD_ALL_VISIBLE in the stored copy.
type flagRecorder struct {
	mu    sync.Mutex
	taps  []*flagTap
	files map[string][][2]uint32
}

func newFlagRecorder() *flagRecorder { return &flagRecorder{files: map[string][][2]uint32{}} }

// tap is an fstree.Tap. Ranges start at page boundaries (chunks are multiples of
// the page size); page numbers count from the start of the file.
func (fr *flagRecorder) tap(en *fstree.Entry, off int64) io.Writer {
	rf, ok := parseRelFile(en.Path)
	if !ok || rf.fork != "" || off%blockSize != 0 {
		return nil
	}
	t := &flagTap{fr: fr, path: en.Path, page: uint32(off / blockSize), runStart: -1}
	fr.mu.Lock()
	fr.taps = append(fr.taps, t)
	fr.mu.Unlock()
	return t
}

func (fr *flagRecorder) add(path string, runs [][2]uint32) {
	fr.mu.Lock()
	fr.files[path] = append(fr.files[path], runs...)
	fr.mu.Unlock()
}

// finish returns the runs per file, once every range is stored.
func (fr *flagRecorder) finish() map[string]pageRuns {
	fr.mu.Lock()
	taps := fr.taps
	fr.taps = nil
	fr.mu.Unlock()
	for _, t := range taps {
		t.flush()
	}
	out := make(map[string]pageRuns, len(fr.files))
	for p, runs := range fr.files {
		if len(runs) > 0 {
			out[p] = mergeRuns(runs)
		}
	}
	return out
}

// flagTap reads the flags of pages as their bytes go by. Only the page header
// matters; a trailing partial page is ignored (a diff compares whole pages only).
type flagTap struct {
	fr       *flagRecorder
	path     string
	page     uint32 // the page being written
	pos      int    // bytes of it seen
	hdr      [12]byte
	runStart int64
	runs     [][2]uint32
}

func (t *flagTap) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if t.pos < len(t.hdr) {
			c := copy(t.hdr[t.pos:], p)
			t.pos += c
			p = p[c:]
			continue
		}
		step := min(len(p), blockSize-t.pos)
		t.pos += step
		p = p[step:]
		if t.pos == blockSize {
			t.endPage()
		}
	}
	return n, nil
}

func (t *flagTap) endPage() {
	if allVisibleFlag(t.hdr[:]) {
		if t.runStart < 0 {
			t.runStart = int64(t.page)
		}
	} else {
		t.closeRun()
	}
	t.page++
	t.pos = 0
	if len(t.runs) >= 1024 { // hand over as it goes: memory stays flat
		t.fr.add(t.path, t.runs)
		t.runs = t.runs[:0:0]
	}
}

func (t *flagTap) closeRun() {
	if t.runStart >= 0 {
		t.runs = append(t.runs, [2]uint32{uint32(t.runStart), t.page})
		t.runStart = -1
	}
}

func (t *flagTap) flush() {
	t.closeRun()
	if len(t.runs) > 0 {
		t.fr.add(t.path, t.runs)
		t.runs = nil
	}
}

// legacyDiff reports whether a backup is a diff taken before the visibility map was
// stored whole: its VM pages may be stale.
func legacyDiff(m *repo.Manifest, info *Info) bool {
	return m.Type == repo.TypeDiff && info.Scheme < schemeExact
}

// untrustedVM lists the visibility-map files of a legacy diff, which a restore
// leaves out: PostgreSQL reads a missing map as "nothing is all-visible", which is
// always true enough, and VACUUM builds it again.
func untrustedVM(m *repo.Manifest, info *Info) map[string]bool {
	if !legacyDiff(m, info) {
		return nil
	}
	out := map[string]bool{}
	for _, f := range m.Files {
		if rf, ok := parseRelFile(f.Path); ok && rf.fork == "vm" {
			out[f.Path] = true
		}
	}
	return out
}

// legacyNote is the sentence plans, restores and verify say about a legacy diff.
func legacyNote(m *repo.Manifest, n int) string {
	return fmt.Sprintf("backup %s is a diff taken by a hartvault that copied the visibility map by page LSN, which clearing its bits does not move: "+
		"its %d visibility map files are left out of the restore (PostgreSQL then treats no page as all-visible; VACUUM rebuilds the maps, so run VACUUM for fast index-only scans again)", m.ID, n)
}

// Warnings names what a restore of the backup works around (list and verify print
// them): a legacy diff's visibility maps.
func (e *Engine) Warnings(m *repo.Manifest) []string {
	info, err := ReadInfo(m)
	if err != nil {
		return nil
	}
	if vm := untrustedVM(m, info); len(vm) > 0 {
		return []string{legacyNote(m, len(vm))}
	}
	return nil
}
