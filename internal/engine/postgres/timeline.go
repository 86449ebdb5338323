package postgres

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A timeline's history file lists its ancestors: each line says timeline T ended at
// switch LSN L, where the next one in the list began. Every restore that promotes
// starts a new timeline; the archive keeps them all, branches included.

// timelineStep is one timeline of a path and where it ends (0: it does not).
type timelineStep struct {
	TLI uint32
	End LSN
}

func parseHistory(data []byte) ([]timelineStep, error) {
	var steps []timelineStep
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("bad timeline history line %q", line)
		}
		tli, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad timeline history line %q", line)
		}
		lsn, err := ParseLSN(f[1])
		if err != nil {
			return nil, err
		}
		steps = append(steps, timelineStep{TLI: uint32(tli), End: lsn})
	}
	return steps, sc.Err()
}

// pathsFrom returns, for the backup's timeline and every timeline that branched
// from it at or after from (the backup's consistency point), the path of timelines
// recovery follows from the backup to it, given the histories read from the archive.
func pathsFrom(hist map[uint32][]timelineStep, base uint32, from LSN) map[uint32][]timelineStep {
	paths := map[uint32][]timelineStep{base: {{TLI: base}}}
	for tli, steps := range hist {
		if tli <= base {
			continue
		}
		for i, s := range steps {
			if s.TLI != base {
				continue
			}
			if s.End < from {
				break // it left the backup's timeline before the backup was consistent
			}
			path := append([]timelineStep(nil), steps[i:]...)
			paths[tli] = append(path, timelineStep{TLI: tli})
		}
	}
	return paths
}

// walView is what the archive holds for one cluster, read once: its segments and
// its timeline histories.
type walView struct {
	a    *archive
	segs map[string]walObject
	hist map[uint32][]timelineStep
}

// view reads the archive of a cluster. Restores need every history file; pruning
// (tolerant) goes on without one it cannot read, keeping more rather than less.
func (a *archive) view(ctx context.Context, tolerant bool, log *slog.Logger) (*walView, error) {
	segs, err := a.segments(ctx)
	if err != nil {
		return nil, err
	}
	objs, err := a.list(ctx, a.prefix()+"history/")
	if err != nil {
		return nil, err
	}
	hist, err := a.readHistories(ctx, objs, log)
	if err != nil && !tolerant {
		return nil, err
	}
	return &walView{a: a, segs: segs, hist: hist}, nil
}

// window is how far the archived WAL carries a restore from a backup: the timeline
// it follows (see chooseTimeline), the segments contiguous from the backup's start
// along it, and the last commit in them.
func (v *walView) window(info *Info) *window {
	paths := pathsFrom(v.hist, info.Timeline, info.stopLSN())
	_, start, _ := ParseSegName(info.StartWAL, v.a.segSize)
	windows := map[uint32]*window{}
	for tli, path := range paths {
		windows[tli] = walkPath(v.segs, path, start, v.a.segSize)
	}
	tli := chooseTimeline(paths, windows)
	w := windows[tli]
	w.earliest, w.timeline = info.StopTime, tli
	return w
}

// window walks the segments recovery reads along a timeline path from the backup's
// first segment, as long as they are contiguous in the archive.
func walkPath(segs map[string]walObject, path []timelineStep, start uint64, segSize int64) *window {
	w := &window{}
	step := 0
	seen := map[uint32]bool{}
	for segno := start; ; segno++ {
		step = max(step, stepAt(path, segno, segSize))
		name := SegName(path[step].TLI, segno, segSize)
		o, ok := segs[name]
		if !ok {
			w.missing, w.beyond = name, archivedBeyond(segs, path, segno, segSize)
			break
		}
		if !seen[path[step].TLI] {
			seen[path[step].TLI] = true
			w.timelines = append(w.timelines, path[step].TLI)
		}
		if w.firstSeg == "" {
			w.firstSeg = name
		}
		w.lastSeg = name
		w.segments++
		if o.LastCommit.After(w.lastCommit) {
			w.lastCommit = o.LastCommit
		}
		if o.Partial {
			break
		}
	}
	return w
}

// archivedBeyond counts the archived segments past segno that recovery along path
// would read (each on the timeline the path is on there): WAL after a hole, which
// recovery cannot reach.
func archivedBeyond(segs map[string]walObject, path []timelineStep, segno uint64, segSize int64) int {
	n := 0
	for name := range segs {
		tli, no, ok := ParseSegName(name, segSize)
		if !ok || no <= segno {
			continue
		}
		if path[stepAt(path, no, segSize)].TLI == tli {
			n++
		}
	}
	return n
}

// stepAt is the step of path whose timeline recovery reads segment segno from: a
// segment holding a switch point is read from the newer timeline.
func stepAt(path []timelineStep, segno uint64, segSize int64) int {
	segEnd := LSN((segno + 1) * uint64(segSize))
	step := 0
	for step < len(path)-1 && path[step].End < segEnd {
		step++
	}
	return step
}

// chooseTimeline picks the timeline a restore follows: of the backup's timeline and
// those that branched from it after it was consistent, the one whose archived WAL
// holds the most recent commit (the one the system went on living on), the higher
// number on a tie.
func chooseTimeline(paths map[uint32][]timelineStep, windows map[uint32]*window) uint32 {
	tlis := make([]uint32, 0, len(paths))
	for t := range paths {
		tlis = append(tlis, t)
	}
	sort.Slice(tlis, func(i, j int) bool { return tlis[i] > tlis[j] })
	best := tlis[0]
	var bestTime time.Time
	for _, t := range tlis {
		if lc := windows[t].lastCommit; lc.After(bestTime) {
			best, bestTime = t, lc
		}
	}
	return best
}
