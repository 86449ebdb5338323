package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/storage"
)

// The WAL archive of a source lives in the repository's log area, per cluster
// (system identifier), so two clusters backed up under one source name never mix:
//
//	<sysid>/<TTTTTTTTLLLLLLLL>/<segment>-<sha256:32>-c<last commit, unix µs>
//	<sysid>/<TTTTTTTTLLLLLLLL>/<segment>.partial-<length:hex>-<sha256:32>-c<µs>
//	<sysid>/<TTTTTTTTLLLLLLLL>/<segment>.<offset>.backup-<sha256:32>
//	<sysid>/history/<timeline>.history-<sha256:32>
//
// The hash in the name is of the plain file: pushing the same file again is found
// to be a no-op, different content is refused, and a fetch checks what it read.

// ErrNotArchived means the requested WAL file is not in the repository.
var ErrNotArchived = errors.New("not in the archive")

type archive struct {
	r       *repo.Repo
	source  string
	sysid   uint64
	segSize int64
}

// walObject is one stored WAL file, as its name describes it.
type walObject struct {
	Rel        string // name relative to the source's log prefix
	File       string // the PostgreSQL file name (segment, history, backup history)
	Hash       string
	Partial    bool
	Length     int64 // for partial segments: bytes of WAL held
	LastCommit time.Time
	Modified   time.Time
}

func hash32(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:16])
}

func (a *archive) prefix() string { return strconv.FormatUint(a.sysid, 10) + "/" }

func (a *archive) dirOf(file string) string {
	if IsHistoryName(file) {
		return a.prefix() + "history/"
	}
	return a.prefix() + file[:16] + "/"
}

func commitStamp(t time.Time, ok bool) string {
	if !ok {
		return "c0"
	}
	return "c" + strconv.FormatInt(t.UnixMicro(), 10)
}

// nameFor makes the stored name of a WAL file whose content hashes to h.
func (a *archive) nameFor(file string, data []byte, h string, partial bool) (string, error) {
	switch {
	case IsHistoryName(file), IsBackupHistoryName(file):
		return a.dirOf(file) + file + "-" + h, nil
	}
	if _, _, ok := ParseSegName(file, a.segSize); !ok {
		return "", fmt.Errorf("%s is not a WAL segment, history or backup history file", file)
	}
	_, last, ok, err := CommitTimes(data)
	if err != nil {
		return "", fmt.Errorf("WAL segment %s: %w", file, err)
	}
	if partial {
		return fmt.Sprintf("%s%s.partial-%x-%s-%s", a.dirOf(file), file, len(data), h, commitStamp(last, ok)), nil
	}
	return a.dirOf(file) + file + "-" + h + "-" + commitStamp(last, ok), nil
}

func parseWALName(rel string, modified time.Time) (walObject, bool) {
	o := walObject{Rel: rel, Modified: modified}
	base := rel[strings.LastIndexByte(rel, '/')+1:]
	file, rest, ok := strings.Cut(base, "-")
	if !ok {
		return o, false
	}
	if f, isPartial := strings.CutSuffix(file, ".partial"); isPartial {
		o.File, o.Partial = f, true
		n, r, ok := strings.Cut(rest, "-")
		if !ok {
			return o, false
		}
		l, err := strconv.ParseInt(n, 16, 64)
		if err != nil {
			return o, false
		}
		o.Length, rest = l, r
	} else {
		o.File = file
	}
	h, stamp, _ := strings.Cut(rest, "-")
	o.Hash = h
	if len(h) != 32 {
		return o, false
	}
	if us, err := strconv.ParseInt(strings.TrimPrefix(stamp, "c"), 10, 64); err == nil && us > 0 {
		o.LastCommit = time.UnixMicro(us).UTC()
	}
	return o, true
}

// push stores a WAL file. The same content again is a no-op; different content
// under an archived name is an error (two clusters or a restored copy writing as one).
// The hash is taken while the file is compressed: both are what archive_command
// waits for.
func (a *archive) push(ctx context.Context, file string, data []byte) (stored int64, err error) {
	hashed := make(chan string, 1)
	go func() { hashed <- hash32(data) }()
	var h string
	hash := func() string {
		if h == "" {
			h = <-hashed
		}
		return h
	}
	check := func() (bool, error) {
		objs, err := a.list(ctx, a.dirOf(file)+file+"-")
		if err != nil {
			return false, err
		}
		for _, o := range objs {
			if o.Partial || o.File != file {
				continue
			}
			if o.Hash == hash() {
				return true, nil
			}
			return false, fmt.Errorf("%s is already archived with different content (sha256 %s…, this file %s…): is another cluster or a restored copy archiving as source %s?",
				file, o.Hash[:12], hash()[:12], a.source)
		}
		return false, nil
	}
	if done, err := check(); done || err != nil {
		hash()
		return 0, err
	}
	encoded, err := a.r.EncodeLog(data)
	if err != nil {
		hash()
		return 0, err
	}
	name, err := a.nameFor(file, data, hash(), false)
	if err != nil {
		return 0, err
	}
	stored, err = a.r.PutEncodedLog(ctx, a.source, name, encoded, true)
	if errors.Is(err, storage.ErrExists) {
		// A concurrent push of the same file won the race.
		if done, cerr := check(); done || cerr != nil {
			return 0, cerr
		}
	}
	return stored, err
}

// pushPartial stores the WAL received so far of a segment still being written,
// replacing older partial copies of it.
func (a *archive) pushPartial(ctx context.Context, file string, data []byte) error {
	name, err := a.nameFor(file, data, hash32(data), true)
	if err != nil {
		return err
	}
	if _, err := a.r.PutLog(ctx, a.source, name, data, false); err != nil {
		return err
	}
	return a.dropPartials(ctx, file, name)
}

// dropPartials removes partial copies of a segment other than keep.
func (a *archive) dropPartials(ctx context.Context, file, keep string) error {
	objs, err := a.list(ctx, a.dirOf(file)+file+".partial-")
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.Rel != keep {
			if err := a.r.DeleteLog(ctx, a.source, o.Rel); err != nil {
				return err
			}
		}
	}
	return nil
}

// list returns the archived WAL files whose stored name starts with prefix.
func (a *archive) list(ctx context.Context, prefix string) ([]walObject, error) {
	var out []walObject
	err := a.r.ListLogs(ctx, a.source, prefix, func(o repo.LogObject) error {
		if w, ok := parseWALName(o.Name, o.ModTime); ok {
			out = append(out, w)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the WAL archive of %s: %w", a.source, err)
	}
	return out, nil
}

// fetch returns a WAL file. A segment that was only streamed in part is returned
// zero-padded to its full size: recovery replays what it holds and stops there.
func (a *archive) fetch(ctx context.Context, file string) ([]byte, error) {
	objs, err := a.list(ctx, a.dirOf(file)+file)
	if err != nil {
		return nil, err
	}
	var best *walObject
	for i := range objs {
		o := &objs[i]
		if o.File != file {
			continue
		}
		if !o.Partial {
			best = o
			break
		}
		if best == nil || o.Length > best.Length {
			best = o
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%s: %w", file, ErrNotArchived)
	}
	data, err := a.r.GetLogChecked(ctx, a.source, best.Rel, func(plain []byte) error {
		if hash32(plain) != best.Hash {
			return errors.New("content does not match the hash in its name")
		}
		return nil
	})
	if err != nil {
		var d *repo.DamageError
		if errors.As(err, &d) {
			return nil, err
		}
		return nil, fmt.Errorf("fetch %s: %w", file, err)
	}
	if best.Partial {
		padded := make([]byte, a.segSize)
		copy(padded, data)
		data = padded
	}
	return data, nil
}

// segments lists the archived segments, complete or partial, keyed by file name
// (a complete copy wins over partial ones; the longest partial over shorter).
func (a *archive) segments(ctx context.Context) (map[string]walObject, error) {
	objs, err := a.list(ctx, a.prefix())
	if err != nil {
		return nil, err
	}
	out := map[string]walObject{}
	for _, o := range objs {
		if _, _, ok := ParseSegName(o.File, a.segSize); !ok {
			continue
		}
		cur, seen := out[o.File]
		switch {
		case !seen, cur.Partial && !o.Partial, cur.Partial && o.Partial && o.Length > cur.Length:
			out[o.File] = o
		}
	}
	return out, nil
}

// fetchToFile writes a fetched WAL file to dest atomically.
func writeFileAtomic(dest string, data []byte) error {
	tmp := dest + ".hartvault-tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dest)
}

// readSystemID reads the system identifier from a data directory's pg_control.
func readSystemID(dataDir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "global", "pg_control"))
	if err != nil {
		return 0, fmt.Errorf("read the cluster's system identifier: %w", err)
	}
	if len(b) < 8 {
		return 0, errors.New("pg_control is too short")
	}
	return binary.LittleEndian.Uint64(b[0:8]), nil
}

// prefetch decodes the next segments of the archive ahead of recovery's requests,
// in parallel, into dir: the call that fetches a segment pays for the repository
// (key unlock, listing) once for a run of them. Files are verified before they are
// written and named by segment; the caller renames them into place.
func (a *archive) prefetch(ctx context.Context, after string, dir string, n, workers int) {
	tli, segno, ok := ParseSegName(after, a.segSize)
	if !ok {
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	segs, err := a.segments(ctx)
	if err != nil {
		return
	}
	var names []string
	for i := uint64(1); i <= uint64(n); i++ {
		name := SegName(tli, segno+i, a.segSize)
		if o, ok := segs[name]; !ok || o.Partial {
			break // partial copies change while streaming: fetch those on demand
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	work := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				data, err := a.fetch(ctx, name)
				if err == nil {
					writeFileAtomic(filepath.Join(dir, name), data)
				}
			}
		}()
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
}
