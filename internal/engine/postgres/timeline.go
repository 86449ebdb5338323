package postgres

import (
	"bufio"
	"context"
	"fmt"
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

// timelinePaths returns, for the backup's timeline and every archived timeline that
// branched from it at or after from (the backup's consistency point), the path of
// timelines recovery follows from the backup to it.
func (a *archive) timelinePaths(ctx context.Context, base uint32, from LSN) (map[uint32][]timelineStep, error) {
	paths := map[uint32][]timelineStep{base: {{TLI: base}}}
	objs, err := a.list(ctx, a.prefix()+"history/")
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		tli64, err := strconv.ParseUint(strings.TrimSuffix(o.File, ".history"), 16, 32)
		if err != nil || uint32(tli64) <= base {
			continue
		}
		data, err := a.fetch(ctx, o.File)
		if err != nil {
			return nil, err
		}
		steps, err := parseHistory(data)
		if err != nil {
			return nil, fmt.Errorf("timeline history %s: %w", o.File, err)
		}
		for i, s := range steps {
			if s.TLI != base {
				continue
			}
			if s.End < from {
				break // it left the backup's timeline before the backup was consistent
			}
			path := append([]timelineStep(nil), steps[i:]...)
			paths[uint32(tli64)] = append(path, timelineStep{TLI: uint32(tli64)})
		}
	}
	return paths, nil
}

// window walks the segments recovery reads along a timeline path from the backup's
// first segment, as long as they are contiguous in the archive.
func walkPath(segs map[string]walObject, path []timelineStep, start uint64, segSize int64) *window {
	w := &window{}
	step := 0
	seen := map[uint32]bool{}
	for segno := start; ; segno++ {
		segEnd := LSN((segno + 1) * uint64(segSize))
		// A segment holding a switch point is read from the newer timeline.
		for step < len(path)-1 && path[step].End < segEnd {
			step++
		}
		name := SegName(path[step].TLI, segno, segSize)
		o, ok := segs[name]
		if !ok {
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
