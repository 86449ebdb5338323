package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/hartonomous/hartvault/internal/storage"
)

// ReplicaReport is the outcome of bringing one replica up to date.
type ReplicaReport struct {
	URL    string
	Copied []string // backup ids copied in this run
	Err    error
}

// SyncReplicas copies to every replica the committed backups of source it lacks
// (all sources when source is ""): objects first, each read back and checked there,
// then the manifest, so a replica shows only complete backups. A replica that failed
// before is simply behind: this run catches it up.
func (r *Repo) SyncReplicas(ctx context.Context, source string) []ReplicaReport {
	var out []ReplicaReport
	for _, url := range r.opts.Replicas {
		rep := ReplicaReport{URL: url}
		rep.Copied, rep.Err = r.syncReplica(ctx, url, source)
		out = append(out, rep)
	}
	return out
}

func (r *Repo) openReplica(ctx context.Context, url string) (*storage.Store, error) {
	st, err := r.opts.OpenStore(ctx, url)
	if err != nil {
		return nil, err
	}
	raw, err := st.ReadAll(ctx, ConfigKey)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// A replica added to the plan after init: make it a copy of this repository.
		if err := st.Create(ctx); err != nil {
			st.Close()
			return nil, fmt.Errorf("create replica %s: %w", st, err)
		}
		data, _ := json.MarshalIndent(r.config, "", "  ")
		if err := st.Put(ctx, ConfigKey, data, storage.PutOptions{IfNotExist: true}); err != nil && !errors.Is(err, storage.ErrExists) {
			st.Close()
			return nil, fmt.Errorf("initialise replica %s: %w", st, err)
		}
	case err != nil:
		st.Close()
		return nil, fmt.Errorf("read replica %s: %w", st, err)
	default:
		var cfg Config
		if err := json.Unmarshal(raw, &cfg); err != nil || cfg.ID != r.config.ID {
			st.Close()
			return nil, fmt.Errorf("replica %s holds another repository (id differs): refusing to write to it", st)
		}
	}
	return st, nil
}

func (r *Repo) syncReplica(ctx context.Context, url, source string) ([]string, error) {
	st, err := r.openReplica(ctx, url)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	have := map[string]bool{}
	prefix := "backups/"
	if source != "" {
		prefix += source + "/"
	}
	if err := st.List(ctx, prefix, func(o storage.ObjectInfo) error {
		have[o.Key] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list replica %s: %w", st, err)
	}
	backups, err := r.Backups(ctx, source)
	if err != nil {
		return nil, err
	}
	// The log first: a backup that appears on the replica finds there the WAL that
	// makes it consistent.
	if _, err := r.syncLogs(ctx, st, source); err != nil {
		return nil, err
	}
	var copied []string
	for _, m := range backups {
		key := manifestKey(m.Source, m.ID)
		if have[key] {
			continue
		}
		po := r.putOptions(m.Kind, m.Type)
		for _, obj := range m.Objects {
			if err := copyObject(ctx, r.store, st, obj, po); err != nil {
				return copied, fmt.Errorf("replica %s: backup %s: %w", st, m.ID, err)
			}
		}
		raw, err := r.store.ReadAll(ctx, key)
		if err != nil {
			return copied, fmt.Errorf("read manifest %s: %w", key, err)
		}
		if err := st.Put(ctx, key, raw, storage.PutOptions{RetainUntil: po.RetainUntil}); err != nil {
			return copied, fmt.Errorf("replica %s: write manifest %s: %w", st, key, err)
		}
		copied = append(copied, m.ID)
	}
	return copied, nil
}

// SyncReplicaLogs copies to every replica the log objects (PostgreSQL's WAL) of
// source it lacks ("" for all sources), so that between backups a replica can
// replay as far as the primary. Copied lists the object names copied.
func (r *Repo) SyncReplicaLogs(ctx context.Context, source string) []ReplicaReport {
	var out []ReplicaReport
	for _, url := range r.opts.Replicas {
		rep := ReplicaReport{URL: url}
		st, err := r.openReplica(ctx, url)
		if err == nil {
			rep.Copied, err = r.syncLogs(ctx, st, source)
			st.Close()
		}
		rep.Err = err
		out = append(out, rep)
	}
	return out
}

// syncLogs copies the log objects the replica lacks, oldest name first, and removes
// from it the partial segments the primary no longer holds (replaced by newer ones).
// Log objects are written once under names that hold their content's hash, so an
// object present with the same size is the same object.
func (r *Repo) syncLogs(ctx context.Context, st *storage.Store, source string) ([]string, error) {
	prefix := "logs/"
	if source != "" {
		prefix = LogPrefix(source)
	}
	list := func(s *storage.Store) (map[string]int64, error) {
		out := map[string]int64{}
		err := s.List(ctx, prefix, func(o storage.ObjectInfo) error {
			out[o.Key] = o.Size
			return nil
		})
		return out, err
	}
	primary, err := list(r.store)
	if err != nil {
		return nil, fmt.Errorf("list the log in %s: %w", r, err)
	}
	have, err := list(st)
	if err != nil {
		return nil, fmt.Errorf("list the log in replica %s: %w", st, err)
	}
	keys := make([]string, 0, len(primary))
	for k, size := range primary {
		if hs, ok := have[k]; !ok || hs != size {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	po := r.putOptions("", TypeLog)
	var copied []string
	for _, k := range keys {
		raw, err := r.store.ReadAll(ctx, k)
		if errors.Is(err, storage.ErrNotFound) {
			continue // pruned, or a partial replaced, since the listing
		}
		if err != nil {
			return copied, fmt.Errorf("read %s: %w", k, err)
		}
		if err := st.Put(ctx, k, raw, po); err != nil {
			return copied, fmt.Errorf("replica %s: write %s: %w", st, k, err)
		}
		back, err := st.ReadAll(ctx, k)
		if err != nil || !bytes.Equal(back, raw) {
			return copied, fmt.Errorf("replica %s: %s does not read back as written", st, k)
		}
		copied = append(copied, strings.TrimPrefix(k, "logs/"))
	}
	for k := range have {
		if _, ok := primary[k]; !ok && strings.Contains(k, ".partial") {
			if err := st.Delete(ctx, k); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return copied, fmt.Errorf("replica %s: remove the replaced partial segment %s: %w", st, k, err)
			}
		}
	}
	return copied, nil
}

// copyObject copies stored bytes as they are (no re-encryption) with the replica's
// write options (tier, retention lock) and checks the copy by reading it back.
func copyObject(ctx context.Context, from, to *storage.Store, obj Object, po storage.PutOptions) error {
	if info, err := to.Stat(ctx, obj.Key); err == nil && info.Size == obj.Size {
		if reason := checkStored(ctx, to, obj); reason == "" {
			return nil // copied by an earlier, interrupted run
		}
	}
	src, err := from.NewReader(ctx, obj.Key, 0, -1)
	if err != nil {
		return fmt.Errorf("read %s: %w", obj.Key, err)
	}
	defer src.Close()
	w, err := to.NewWriter(ctx, obj.Key, po)
	if err != nil {
		return fmt.Errorf("write %s: %w", obj.Key, err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), src); err != nil {
		w.Abort()
		return fmt.Errorf("copy %s: %w", obj.Key, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != obj.SHA256 {
		w.Abort()
		return &DamageError{Object: obj.Key, Reason: "the primary copy does not match the manifest: not replicated"}
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("write %s: %w", obj.Key, err)
	}
	if reason := checkStored(ctx, to, obj); reason != "" {
		return fmt.Errorf("%s does not verify on the replica after copying: %s", obj.Key, reason)
	}
	return nil
}

// ReplicaStore opens a replica of this repository for reading (verify, restore).
func (r *Repo) ReplicaStore(ctx context.Context, url string) (*storage.Store, error) {
	return r.opts.OpenStore(ctx, url)
}
