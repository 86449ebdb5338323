package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hartonomous/hartvault/internal/storage"
	"github.com/hartonomous/hartvault/internal/stream"
)

// Log objects are a source's continuous log (PostgreSQL WAL segments, history
// files): small, numerous, each complete in itself, with no manifest. They live
// under logs/<source>/ with names the engine chooses; each is encoded like any
// object (compressed, encrypted) and carries its encoding in its first bytes.

// LogPrefix is where a source's log objects live.
func LogPrefix(source string) string { return "logs/" + source + "/" }

// PutLog encodes plain and stores it under LogPrefix(source)+name. With exclusive,
// an existing object makes it fail with storage.ErrExists (the caller decides
// whether the existing one is the same).
func (r *Repo) PutLog(ctx context.Context, source, name string, plain []byte, exclusive bool) (stored int64, err error) {
	data, err := r.EncodeLog(plain)
	if err != nil {
		return 0, err
	}
	return r.PutEncodedLog(ctx, source, name, data, exclusive)
}

// EncodeLog encodes a log object for PutEncodedLog, compressing on every worker.
func (r *Repo) EncodeLog(plain []byte) ([]byte, error) {
	return r.writeCd.EncodeParallel(plain, r.opts.Workers)
}

// PutEncodedLog stores a log object encoded by EncodeLog.
func (r *Repo) PutEncodedLog(ctx context.Context, source, name string, data []byte, exclusive bool) (stored int64, err error) {
	key := LogPrefix(source) + name
	po := r.putOptions("", TypeLog)
	po.IfNotExist = exclusive
	if err := r.store.Put(ctx, key, data, po); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return 0, err
		}
		return 0, fmt.Errorf("store %s: %w", key, err)
	}
	return int64(len(data)), nil
}

// GetLog reads and decodes a log object.
func (r *Repo) GetLog(ctx context.Context, source, name string) ([]byte, error) {
	key := LogPrefix(source) + name
	raw, err := r.readAll(ctx, key)
	if err != nil {
		return nil, err
	}
	plain, err := r.decodeAny(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return plain, nil
}

// GetLogChecked reads a log object like GetLog and checks the plain bytes with
// check (the engine's own hash of the content). A copy that cannot be read or
// decoded, or fails the check, is read once more from the primary and then from
// each replica; when no copy is intact the error is a *DamageError naming the
// object, or the primary's read error.
func (r *Repo) GetLogChecked(ctx context.Context, source, name string, check func(plain []byte) error) ([]byte, error) {
	key := LogPrefix(source) + name
	attempt := func(read func() ([]byte, error)) ([]byte, error) {
		raw, err := read()
		if err != nil {
			return nil, err
		}
		plain, err := r.decodeAny(raw)
		if err != nil {
			return nil, &DamageError{Object: key, Reason: "cannot be decoded: " + err.Error()}
		}
		if err := check(plain); err != nil {
			return nil, &DamageError{Object: key, Reason: err.Error()}
		}
		return plain, nil
	}
	var first error
	for try := 0; try < 2; try++ {
		plain, err := attempt(func() ([]byte, error) { return r.readAll(ctx, key) })
		if err == nil {
			return plain, nil
		}
		if first == nil {
			first = err
		}
		if errors.Is(err, storage.ErrNotFound) || ctx.Err() != nil {
			break
		}
	}
	if r.opts.AsReplica {
		return nil, first
	}
	for _, url := range r.opts.Replicas {
		st, err := r.replicaStore(ctx, url)
		if err != nil {
			continue
		}
		plain, err := attempt(func() ([]byte, error) { return st.ReadAll(ctx, key) })
		if err == nil {
			r.log.Warn("read an intact copy from a replica", "object", key, "replica", url, "primary", ScrubError(first.Error()))
			return plain, nil
		}
	}
	return nil, first
}

// decodeAny decodes an object whose encoding is told by its first bytes: an age
// header, then (inside or alone) a zstd frame, else raw bytes.
func (r *Repo) decodeAny(raw []byte) ([]byte, error) {
	if bytes.HasPrefix(raw, ageMagic) {
		cd, err := r.unlock()
		if err != nil {
			return nil, err
		}
		raw, err = cd.Decode(raw, stream.Encoding{Encrypted: true, Compression: stream.CompressionNone}, stream.Expect{})
		if err != nil {
			return nil, err
		}
	}
	if bytes.HasPrefix(raw, zstdMagic) {
		cd, err := stream.New(stream.Config{})
		if err != nil {
			return nil, err
		}
		return cd.Decode(raw, stream.Encoding{Compression: stream.CompressionZstd}, stream.Expect{})
	}
	return raw, nil
}

// LogObject is a stored log object.
type LogObject struct {
	Name string // relative to the source's log prefix
	storage.ObjectInfo
}

// ListLogs calls fn for each log object of source whose name starts with prefix,
// in name order.
func (r *Repo) ListLogs(ctx context.Context, source, prefix string, fn func(LogObject) error) error {
	base := LogPrefix(source)
	return r.store.List(ctx, base+prefix, func(o storage.ObjectInfo) error {
		return fn(LogObject{Name: strings.TrimPrefix(o.Key, base), ObjectInfo: o})
	})
}

// DeleteLog removes a log object.
func (r *Repo) DeleteLog(ctx context.Context, source, name string) error {
	return r.store.Delete(ctx, LogPrefix(source)+name)
}
