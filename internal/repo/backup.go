package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hartonomous/hartvault/internal/storage"
	"github.com/hartonomous/hartvault/internal/stream"
)

// BackupSpec starts a backup.
type BackupSpec struct {
	Source string
	Kind   string
	Type   string
	Tag    string
	Parent string
}

// Backup is a backup being written. Data goes into pack volumes through PackWriters
// (one per goroutine); entries are added as files complete; Commit writes the
// manifest last, so nothing is visible before all data is stored.
type Backup struct {
	r    *Repo
	ctx  context.Context // for uploads, which outlive the pack writer that sealed them
	lock *Lock
	m    Manifest

	mu      sync.Mutex
	objects []Object
	nextObj int
	uploads sync.WaitGroup
	upErr   error
	upSem   chan struct{}
	bytes   atomic.Int64
	done    bool
}

// BeginBackup starts a backup of spec.Source. The caller must hold the source's lock;
// it is checked again before the manifest is written.
func (r *Repo) BeginBackup(ctx context.Context, lock *Lock, spec BackupSpec) (*Backup, error) {
	if lock == nil || lock.source != spec.Source {
		return nil, fmt.Errorf("backup of %s started without its lock", spec.Source)
	}
	now := r.opts.Now().UTC()
	b := &Backup{
		r:    r,
		ctx:  ctx,
		lock: lock,
		m: Manifest{
			Format: ManifestFormat, ID: NewID(now, spec.Type), Repository: r.config.ID,
			Source: spec.Source, Kind: spec.Kind, Type: spec.Type, Tag: spec.Tag, Parent: spec.Parent,
			Started: now, Host: r.host, ToolVersion: r.opts.ToolVersion,
		},
		// Uploads overlap with packing; the bound keeps spooled volumes and memory in check.
		upSem: make(chan struct{}, r.opts.Workers+1),
	}
	return b, nil
}

// ID is the new backup's id.
func (b *Backup) ID() string { return b.m.ID }

// AddBytes counts bytes read from the source (reported as the manifest's Bytes).
func (b *Backup) AddBytes(n int64) { b.bytes.Add(n) }

// AddFile records a captured file. Safe for concurrent use.
func (b *Backup) AddFile(f File) {
	b.mu.Lock()
	b.m.Files = append(b.m.Files, f)
	b.mu.Unlock()
}

// SetEngine records the engine's own section of the manifest.
func (b *Backup) SetEngine(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b.m.Engine = raw
	return nil
}

func (b *Backup) newObject() (int, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.nextObj
	b.nextObj++
	b.objects = append(b.objects, Object{})
	return n, volumeKey(b.m.Source, b.m.ID, n)
}

// AddObject records an object stored by someone else (a database server writing
// straight to the repository's storage) and returns its index for extents. The
// caller has already checked that it is completely stored.
func (b *Backup) AddObject(o Object) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.nextObj
	b.nextObj++
	b.objects = append(b.objects, o)
	return n
}

// DataPrefix is where this backup's objects go; objects stored by someone else
// must be put under it, so cleanup and retention find them.
func (b *Backup) DataPrefix() string { return dataPrefix(b.m.Source, b.m.ID) }

func (b *Backup) setObject(n int, o Object) {
	b.mu.Lock()
	b.objects[n] = o
	b.mu.Unlock()
}

func (b *Backup) uploadFailed(err error) {
	b.mu.Lock()
	if b.upErr == nil {
		b.upErr = err
	}
	b.mu.Unlock()
}

func (b *Backup) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.upErr
}

// PackWriter packs content into volumes. Not safe for concurrent use: give each
// worker its own.
type PackWriter struct {
	b   *Backup
	ctx context.Context
	// the open volume
	n      int
	key    string
	ow     storage.ObjectWriter
	sw     *stream.Writer
	filled int64
	buf    []byte
	h      hash.Hash
}

// NewPackWriter returns a writer for one worker. Close it when the worker is done.
func (b *Backup) NewPackWriter(ctx context.Context) *PackWriter {
	return &PackWriter{b: b, ctx: ctx, n: -1}
}

func (p *PackWriter) open() error {
	if err := p.b.failed(); err != nil {
		return err
	}
	n, key := p.b.newObject()
	ow, err := p.b.r.store.NewWriter(p.b.ctx, key, p.b.r.putOptions(p.b.m.Kind, p.b.m.Type))
	if err != nil {
		return fmt.Errorf("start volume %s: %w", key, err)
	}
	sw, err := p.b.r.writeCd.NewUnhashedWriter(ow)
	if err != nil {
		ow.Abort()
		return err
	}
	p.n, p.key, p.ow, p.sw, p.filled = n, key, ow, sw, 0
	return nil
}

// seal finishes the open volume and commits it in the background.
func (p *PackWriter) seal() error {
	if p.ow == nil {
		return nil
	}
	ow, sw, n, key, filled := p.ow, p.sw, p.n, p.key, p.filled
	p.ow, p.sw = nil, nil
	if err := sw.Close(); err != nil {
		ow.Abort()
		return fmt.Errorf("finish volume %s: %w", key, err)
	}
	st := sw.Stored()
	obj := Object{Key: key, Size: st.Size, SHA256: st.SHA256, PlainSize: filled, Encoding: p.b.r.writeCd.Encoding()}
	b := p.b
	select {
	case b.upSem <- struct{}{}:
	case <-p.ctx.Done():
		ow.Abort()
		return p.ctx.Err()
	}
	b.uploads.Add(1)
	go func() {
		defer b.uploads.Done()
		defer func() { <-b.upSem }()
		if err := ow.Commit(); err != nil {
			b.uploadFailed(fmt.Errorf("store volume %s: %w", key, err))
			return
		}
		b.setObject(n, obj)
	}()
	return nil
}

// Write stores everything r yields and returns the extents that hold it, starting
// at file offset off. Content larger than the room left in a volume is split; a
// volume is only opened once there is a byte to put in it.
func (p *PackWriter) Write(r io.Reader, off int64) ([]Extent, error) {
	if p.buf == nil {
		p.buf = make([]byte, 256<<10)
		p.h = sha256.New()
	}
	var exts []Extent
	var cur *Extent
	flush := func() {
		if cur != nil {
			cur.SHA256 = hex.EncodeToString(p.h.Sum(nil))
			exts = append(exts, *cur)
			cur = nil
		}
		p.h.Reset()
	}
	p.h.Reset()
	for {
		if err := p.ctx.Err(); err != nil {
			return nil, err
		}
		n, rerr := r.Read(p.buf)
		data := p.buf[:n]
		for len(data) > 0 {
			if p.ow == nil || p.filled >= p.b.r.opts.VolumeSize {
				flush()
				if err := p.seal(); err != nil {
					return nil, err
				}
				if err := p.open(); err != nil {
					return nil, err
				}
			}
			chunk := data[:min(int64(len(data)), p.b.r.opts.VolumeSize-p.filled)]
			if cur == nil {
				cur = &Extent{Offset: off, Object: p.n, At: p.filled}
			}
			p.h.Write(chunk)
			if _, err := p.sw.Write(chunk); err != nil {
				return nil, fmt.Errorf("write volume %s: %w", p.key, err)
			}
			l := int64(len(chunk))
			p.filled += l
			cur.Length += l
			off += l
			data = data[l:]
		}
		if rerr == io.EOF {
			flush()
			return exts, nil
		}
		if rerr != nil {
			return nil, rerr
		}
	}
}

// Close seals the open volume.
func (p *PackWriter) Close() error { return p.seal() }

// Abort discards the open volume.
func (p *PackWriter) Abort() {
	if p.ow != nil {
		p.sw.Abort()
		p.ow.Abort()
		p.ow, p.sw = nil, nil
	}
}

// Commit waits for every volume to be stored, checks the lock is still ours, and
// writes the manifest: the backup becomes visible only now.
func (b *Backup) Commit(ctx context.Context) (*Manifest, error) {
	b.uploads.Wait()
	if err := b.failed(); err != nil {
		return nil, err
	}
	for i, o := range b.objects {
		if o.Key == "" {
			return nil, fmt.Errorf("volume %d of backup %s was not stored", i, b.m.ID)
		}
	}
	m := b.m
	m.Objects = b.objects
	m.Bytes = b.bytes.Load()
	for _, o := range m.Objects {
		m.StoredBytes += o.Size
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	m.Finished = b.r.opts.Now().UTC()
	if !m.Finished.After(m.Started) {
		// Keep finish strictly after start so time-based selection is unambiguous.
		m.Finished = m.Started.Add(1)
	}
	data, err := b.r.encodeMeta(&m)
	if err != nil {
		return nil, err
	}
	if err := b.lock.Check(ctx); err != nil {
		return nil, err
	}
	key := manifestKey(m.Source, m.ID)
	po := storage.PutOptions{IfNotExist: true, RetainUntil: b.r.putOptions(m.Kind, m.Type).RetainUntil}
	if err := b.r.store.Put(ctx, key, data, po); err != nil && !errors.Is(err, storage.ErrExists) {
		return nil, fmt.Errorf("write manifest %s: %w", key, err)
	}
	b.done = true
	return &m, nil
}

// Abort removes what the backup stored. A backup that is never committed stays
// invisible even without Abort; Abort only saves the next run the cleanup.
func (b *Backup) Abort(ctx context.Context) {
	if b.done {
		return
	}
	b.uploads.Wait()
	// A manifest write reported as failed may have landed all the same: then the
	// backup is visible, and its data must stay.
	if _, err := b.r.store.Stat(ctx, manifestKey(b.m.Source, b.m.ID)); err == nil {
		return
	}
	prefix := dataPrefix(b.m.Source, b.m.ID)
	_ = b.r.deletePrefix(ctx, b.r.store, prefix)
}

func (r *Repo) deletePrefix(ctx context.Context, st *storage.Store, prefix string) error {
	var keys []string
	if err := st.List(ctx, prefix, func(o storage.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := st.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// CleanLeftovers removes data of backups of source that never committed (a crash or
// kill mid-backup). The caller holds the source's lock, so no run is writing them.
func (r *Repo) CleanLeftovers(ctx context.Context, source string, keep string) (removed []string, err error) {
	if r.opts.AsReplica {
		return nil, nil
	}
	committed := map[string]bool{}
	if err := r.store.List(ctx, "backups/"+source+"/", func(o storage.ObjectInfo) error {
		if _, id, ok := parseManifestKey(o.Key); ok {
			committed[id] = true
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list backups of %s: %w", source, err)
	}
	orphans := map[string]bool{}
	prefix := "data/" + source + "/"
	if err := r.store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		rest := o.Key[len(prefix):]
		id, _, ok := cutSlash(rest)
		if ok && !committed[id] && id != keep {
			orphans[id] = true
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list data of %s: %w", source, err)
	}
	for id := range orphans {
		if err := r.deletePrefix(ctx, r.store, dataPrefix(source, id)); err != nil {
			return removed, fmt.Errorf("remove leftovers of interrupted backup %s: %w", id, err)
		}
		removed = append(removed, id)
	}
	sort.Strings(removed)
	return removed, nil
}

func cutSlash(s string) (before, after string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
