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
	Logs   int      // log objects copied in this run
	Err    error
}

// SyncReplicas copies to every replica what of source it lacks (all sources when
// source is ""): the log objects first, then the committed backups, objects before
// manifests, each read back and checked there, so a replica shows only complete
// backups. A replica that failed before is simply behind: this run catches it up.
// The primary's catalog and log are read once for all replicas.
func (r *Repo) SyncReplicas(ctx context.Context, source string) []ReplicaReport {
	return r.syncAll(ctx, source, true)
}

// SyncReplicaLogs copies to every replica only the log objects (PostgreSQL's WAL) of
// source it lacks ("" for all sources), so that between backups a replica can replay
// as far as the primary.
func (r *Repo) SyncReplicaLogs(ctx context.Context, source string) []ReplicaReport {
	return r.syncAll(ctx, source, false)
}

func (r *Repo) syncAll(ctx context.Context, source string, withBackups bool) []ReplicaReport {
	out := make([]ReplicaReport, len(r.opts.Replicas))
	for i, url := range r.opts.Replicas {
		out[i].URL = url
	}
	fail := func(err error) []ReplicaReport {
		for i := range out {
			if out[i].Err == nil {
				out[i].Err = err
			}
		}
		return out
	}
	if len(out) == 0 {
		return out
	}
	logs, err := listSizes(ctx, r.store, logPrefixFor(source))
	if err != nil {
		return fail(fmt.Errorf("list the log in %s: %w", r, err))
	}
	var backups []*Manifest
	if withBackups {
		if backups, err = r.Backups(ctx, source); err != nil {
			return fail(err)
		}
	}
	held := map[string]int{} // backup id: replicas that hold it after this run
	copied := map[string]bool{}
	for i := range out {
		rep := &out[i]
		st, err := r.openReplica(ctx, rep.URL)
		if err != nil {
			rep.Err = err
			continue
		}
		// The log first: a backup that appears on the replica finds there the WAL that
		// makes it consistent.
		rep.Logs, rep.Err = r.syncLogs(ctx, st, source, logs)
		if rep.Err == nil && withBackups {
			var present map[string]bool
			rep.Copied, present, rep.Err = r.syncBackups(ctx, st, source, backups)
			for id := range present {
				held[id]++
			}
			for _, id := range rep.Copied {
				copied[id] = true
			}
		}
		st.Close()
	}
	if err := r.archiveReplicated(ctx, backups, held, copied); err != nil {
		return fail(err)
	}
	return out
}

// archiveReplicated moves to the archive tier the objects of backups bound for it
// (deferArchive) that every replica now holds, among those copied in this run.
func (r *Repo) archiveReplicated(ctx context.Context, backups []*Manifest, held map[string]int, copied map[string]bool) error {
	for _, m := range backups {
		tier := r.opts.tierFor(m.Kind, m.Type)
		if !copied[m.ID] || held[m.ID] < len(r.opts.Replicas) || !r.deferArchive(tier) {
			continue
		}
		for _, o := range m.Objects {
			if err := r.store.SetTier(ctx, o.Key, tier); err != nil {
				return fmt.Errorf("move backup %s to the %s tier after replicating it: %w", m.ID, tier, err)
			}
		}
	}
	return nil
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

// syncBackups copies to one replica the backups it lacks; present are the backups it
// holds after.
func (r *Repo) syncBackups(ctx context.Context, st *storage.Store, source string, backups []*Manifest) (copied []string, present map[string]bool, err error) {
	present = map[string]bool{}
	prefix := "backups/"
	if source != "" {
		prefix += source + "/"
	}
	if err := st.List(ctx, prefix, func(o storage.ObjectInfo) error {
		if _, id, ok := parseManifestKey(o.Key); ok {
			present[id] = true
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("list replica %s: %w", st, err)
	}
	for _, m := range backups {
		if present[m.ID] {
			continue
		}
		// The replica's objects go to the tier the plan gives them; one bound for the
		// archive tier is written and checked first, then moved (it cannot be read there).
		po := storage.PutOptions{Tier: r.opts.tierFor(m.Kind, m.Type), RetainUntil: r.putOptions(m.Kind, m.Type).RetainUntil}
		for _, obj := range m.Objects {
			if err := copyObject(ctx, r.store, st, obj, po); err != nil {
				return copied, present, fmt.Errorf("replica %s: backup %s: %w", st, m.ID, err)
			}
		}
		key := manifestKey(m.Source, m.ID)
		raw, err := r.store.ReadAll(ctx, key)
		if err != nil {
			return copied, present, fmt.Errorf("read manifest %s: %w", key, err)
		}
		if err := st.Put(ctx, key, raw, storage.PutOptions{RetainUntil: po.RetainUntil}); err != nil {
			return copied, present, fmt.Errorf("replica %s: write manifest %s: %w", st, key, err)
		}
		copied = append(copied, m.ID)
		present[m.ID] = true
	}
	return copied, present, nil
}

// partialMarker is in the names of log objects that a newer object of the same name
// supersedes (PostgreSQL's partial segments): the primary replaces them, so a replica
// drops those the primary no longer holds. Other log objects go only by retention.
const partialMarker = ".partial"

func logPrefixFor(source string) string {
	if source == "" {
		return "logs/"
	}
	return LogPrefix(source)
}

// listSizes lists the objects under prefix with their sizes.
func listSizes(ctx context.Context, st *storage.Store, prefix string) (map[string]int64, error) {
	out := map[string]int64{}
	err := st.List(ctx, prefix, func(o storage.ObjectInfo) error {
		out[o.Key] = o.Size
		return nil
	})
	return out, err
}

// syncLogs copies to one replica the log objects of primary (the primary's listing)
// it lacks, oldest name first, and removes from it the superseded partial objects
// the primary no longer holds. Log objects are written once under names that hold
// their content's hash, so an object present with the same size is the same object.
func (r *Repo) syncLogs(ctx context.Context, st *storage.Store, source string, primary map[string]int64) (int, error) {
	have, err := listSizes(ctx, st, logPrefixFor(source))
	if err != nil {
		return 0, fmt.Errorf("list the log in replica %s: %w", st, err)
	}
	keys := make([]string, 0, len(primary))
	for k, size := range primary {
		if hs, ok := have[k]; !ok || hs != size {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	po := r.putOptions("", TypeLog)
	copied := 0
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
		copied++
	}
	for k := range have {
		if _, ok := primary[k]; !ok && strings.Contains(k, partialMarker) {
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
	final := po.Tier
	if strings.EqualFold(final, "archive") && to.CanSetTier() {
		po.Tier = "" // checked below, then archived
	}
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
	if final != po.Tier {
		if err := to.SetTier(ctx, obj.Key, final); err != nil {
			return fmt.Errorf("move %s to the %s tier: %w", obj.Key, final, err)
		}
	}
	return nil
}

// ReplicaStore opens a replica of this repository for reading (verify, restore).
func (r *Repo) ReplicaStore(ctx context.Context, url string) (*storage.Store, error) {
	return r.opts.OpenStore(ctx, url)
}
