package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"sync"

	"github.com/hartonomous/hartvault/internal/parallel"
	"github.com/hartonomous/hartvault/internal/storage"
	"github.com/hartonomous/hartvault/internal/stream"
)

// ExtentSink receives restored content: data yields exactly e.Length bytes of f at
// file offset e.Offset. It is called from several goroutines at once.
type ExtentSink func(f *File, e Extent, data io.Reader) error

// DamageError names a damaged or missing object of a backup.
type DamageError struct {
	Backup string
	Object string
	Reason string
}

func (e *DamageError) Error() string {
	if e.Backup == "" { // a log object, outside any backup
		return fmt.Sprintf("object %s is damaged: %s", e.Object, e.Reason)
	}
	return fmt.Sprintf("backup %s: object %s is damaged: %s", e.Backup, e.Object, e.Reason)
}

type placement struct {
	f *File
	e Extent
}

type objectRef struct {
	backup string
	index  int
}

// Chain loads the manifests that extents of m refer to (m itself and its parents).
func (r *Repo) Chain(ctx context.Context, m *Manifest) (map[string]*Manifest, error) {
	chain := map[string]*Manifest{m.ID: m}
	for _, f := range m.Files {
		for _, e := range f.Extents {
			if e.Backup == "" || chain[e.Backup] != nil {
				continue
			}
			pm, err := r.Manifest(ctx, m.Source, e.Backup)
			if err != nil {
				return nil, fmt.Errorf("backup %s needs backup %s, which cannot be read: %w", m.ID, e.Backup, err)
			}
			chain[e.Backup] = pm
		}
	}
	return chain, nil
}

// ReadFiles streams every object holding content of files (which belong to m),
// once each and in parallel, and hands each extent to sink: first all base extents,
// then all overlay extents, so overlays land on top. Each extent's SHA-256 is
// checked after sink has consumed it, and each object's stored hash at its end; the
// first damage or error stops the work and is returned.
func (r *Repo) ReadFiles(ctx context.Context, m *Manifest, files []*File, progress func(int64), sink ExtentSink) error {
	cd, err := r.unlock()
	if err != nil {
		return err
	}
	chain, err := r.Chain(ctx, m)
	if err != nil {
		return err
	}
	for _, overlay := range []bool{false, true} {
		if err := r.readPhase(ctx, cd, m, chain, files, overlay, progress, sink); err != nil {
			return err
		}
	}
	return nil
}

func (r *Repo) readPhase(ctx context.Context, cd *stream.Codec, m *Manifest, chain map[string]*Manifest, files []*File,
	overlay bool, progress func(int64), sink ExtentSink) error {
	groups := map[objectRef][]placement{}
	for _, f := range files {
		for _, e := range f.Extents {
			if e.Overlay != overlay {
				continue
			}
			b := e.Backup
			if b == "" {
				b = m.ID
			}
			ref := objectRef{b, e.Object}
			groups[ref] = append(groups[ref], placement{f, e})
		}
	}
	refs := make([]objectRef, 0, len(groups))
	for ref, ps := range groups {
		bm := chain[ref.backup]
		if ref.index < 0 || ref.index >= len(bm.Objects) {
			return fmt.Errorf("backup %s refers to object %d of backup %s, which has %d", m.ID, ref.index, ref.backup, len(bm.Objects))
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].e.At < ps[j].e.At })
		refs = append(refs, ref)
	}
	// Biggest objects first keeps the workers evenly busy to the end.
	sort.Slice(refs, func(i, j int) bool {
		return chain[refs[i].backup].Objects[refs[i].index].Size > chain[refs[j].backup].Objects[refs[j].index].Size
	})
	return parallel.Run(ctx, refs, r.opts.Workers, func(ctx context.Context) parallel.Worker[objectRef] {
		h := sha256.New()
		return parallel.Worker[objectRef]{Do: func(ref objectRef) error {
			return r.readObject(ctx, cd, chain[ref.backup], ref.index, groups[ref], h, progress, sink)
		}}
	})
}

func (r *Repo) readObject(ctx context.Context, cd *stream.Codec, bm *Manifest, index int, ps []placement, h hash.Hash, progress func(int64), sink ExtentSink) error {
	obj := bm.Objects[index]
	body, err := r.openObject(ctx, obj.Key, 0, -1)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return &DamageError{Backup: bm.ID, Object: obj.Key, Reason: "missing from the repository"}
		}
		return fmt.Errorf("read %s: %w", obj.Key, err)
	}
	defer body.Close()
	pr, err := cd.NewReader(stream.SourceReader(body), obj.Encoding, stream.Expect{Stored: stream.Sum{Size: obj.Size, SHA256: obj.SHA256}})
	if err != nil {
		return r.objectErr(bm, obj, err)
	}
	defer pr.Close()
	var pos int64
	for _, p := range ps {
		if p.e.At < pos {
			return fmt.Errorf("backup %s: overlapping extents in object %s", bm.ID, obj.Key)
		}
		if n, err := io.CopyN(io.Discard, pr, p.e.At-pos); err != nil {
			return r.objectErr(bm, obj, fmt.Errorf("skip to offset %d (at %d): %w", p.e.At, pos+n, eofIsShort(err)))
		}
		pos = p.e.At
		h.Reset()
		lr := &io.LimitedReader{R: pr, N: p.e.Length}
		hr := &hashReader{r: lr, h: h}
		if err := sink(p.f, p.e, hr); err != nil {
			if hr.err != nil {
				return r.objectErr(bm, obj, hr.err)
			}
			return err
		}
		if lr.N > 0 {
			if _, err := io.Copy(io.Discard, hr); err != nil {
				return r.objectErr(bm, obj, err)
			}
			if lr.N > 0 {
				return r.objectErr(bm, obj, fmt.Errorf("extent of %s ends early", p.f.Path))
			}
		}
		pos += p.e.Length
		if progress != nil {
			progress(p.e.Length)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != p.e.SHA256 {
			return &DamageError{Backup: bm.ID, Object: obj.Key,
				Reason: fmt.Sprintf("content of %s at offset %d does not match its checksum", p.f.Path, p.e.Offset)}
		}
	}
	// Read to the end so the stored bytes' hash is checked too.
	if _, err := io.Copy(io.Discard, pr); err != nil {
		return r.objectErr(bm, obj, err)
	}
	return nil
}

// hashReader hashes what passes through and remembers the read error, so a sink's
// error caused by damaged input is reported as damage.
type hashReader struct {
	r   io.Reader
	h   hash.Hash
	err error
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	if err != nil && err != io.EOF {
		h.err = err
	}
	return n, err
}

func eofIsShort(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (r *Repo) objectErr(bm *Manifest, obj Object, err error) error {
	if stream.IsCorrupt(err) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &DamageError{Backup: bm.ID, Object: obj.Key, Reason: err.Error()}
	}
	return fmt.Errorf("backup %s: read %s: %w", bm.ID, obj.Key, err)
}

// ObjectResult is the outcome of verifying one object.
type ObjectResult struct {
	Backup string
	Object Object
	Err    error // nil when intact; a *DamageError when damaged
}

// VerifyObjects reads back every object of m from st (the primary when nil) and
// checks size and SHA-256 of the stored bytes against the manifest, in parallel.
// fn is called once per object.
func (r *Repo) VerifyObjects(ctx context.Context, st *storage.Store, m *Manifest, fn func(ObjectResult)) error {
	if st == nil {
		st = r.store
	}
	var mu sync.Mutex
	return parallel.Run(ctx, m.Objects, r.opts.Workers, func(ctx context.Context) parallel.Worker[Object] {
		return parallel.Worker[Object]{Do: func(obj Object) error {
			var err error
			if reason := checkStored(ctx, st, obj); reason != "" && ctx.Err() == nil {
				err = &DamageError{Backup: m.ID, Object: obj.Key, Reason: reason}
			}
			mu.Lock()
			fn(ObjectResult{Backup: m.ID, Object: obj, Err: err})
			mu.Unlock()
			return nil
		}}
	})
}

// checkStored returns why an object does not match its manifest ("" when it does).
// A storage error that persists through retries counts: the object cannot be read.
func checkStored(ctx context.Context, st *storage.Store, obj Object) string {
	body, err := st.NewReader(ctx, obj.Key, 0, -1)
	if errors.Is(err, storage.ErrNotFound) {
		return "missing"
	}
	if err != nil {
		return err.Error()
	}
	defer body.Close()
	h := sha256.New()
	n, err := io.Copy(h, body)
	if err != nil {
		return err.Error()
	}
	if n != obj.Size {
		return fmt.Sprintf("size %d, manifest says %d", n, obj.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != obj.SHA256 {
		return fmt.Sprintf("sha256 %.16s…, manifest says %.16s…", got, obj.SHA256)
	}
	return ""
}

// CheckKey makes sure this run can decrypt backup m, by unlocking the repository key
// and opening the header of one of its objects: a wrong key fails here, before a
// restore touches its target.
func (r *Repo) CheckKey(ctx context.Context, m *Manifest) error {
	cd, err := r.unlock()
	if err != nil {
		return err
	}
	for _, obj := range m.Objects {
		if !obj.Encrypted {
			continue
		}
		body, err := r.openObject(ctx, obj.Key, 0, 64<<10)
		if errors.Is(err, storage.ErrNotFound) {
			continue // lost: another object tells as well
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", obj.Key, err)
		}
		defer body.Close()
		_, err = cd.NewReader(body, stream.Encoding{Encrypted: true, Compression: stream.CompressionNone}, stream.Expect{})
		if err != nil && !stream.IsCorrupt(err) {
			return err
		}
		return nil
	}
	return nil
}
