package repo

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hartonomous/hartvault/internal/storage"
)

// Reads that fall back to the replicas: a restore whose primary loses an object, or
// stops answering midway, goes on from a replica's copy of the same bytes (replicas
// hold the stored objects as they are, so every check still applies). After the
// primary fails with anything but "not found", the rest is read from the replicas
// without waiting for the primary's retries again.

// openObject opens a stored object of a backup or of the log for reading.
func (r *Repo) openObject(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	var primaryErr error
	if !r.primaryDown.Load() {
		body, err := r.store.NewReader(ctx, key, offset, length)
		if err == nil || !r.canFallBack(ctx) {
			return body, err
		}
		primaryErr = err
		if !errors.Is(err, storage.ErrNotFound) && !r.primaryDown.Swap(true) {
			r.log.Warn("the primary repository fails: reading the rest from the replicas", "err", ScrubError(err.Error()))
		}
	}
	for _, url := range r.opts.Replicas {
		st, err := r.replicaStore(ctx, url)
		if err != nil {
			continue
		}
		body, err := st.NewReader(ctx, key, offset, length)
		if err == nil {
			if primaryErr != nil {
				r.log.Warn("read from a replica", "object", key, "replica", url, "primary", ScrubError(primaryErr.Error()))
			}
			return body, nil
		}
	}
	if primaryErr == nil {
		primaryErr = fmt.Errorf("read %s: the primary repository failed before, and no replica has it", key)
	}
	return nil, primaryErr
}

// readAll reads a whole stored object, falling back to the replicas like openObject.
func (r *Repo) readAll(ctx context.Context, key string) ([]byte, error) {
	body, err := r.openObject(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(body)
}

func (r *Repo) canFallBack(ctx context.Context) bool {
	return len(r.opts.Replicas) > 0 && !r.opts.AsReplica && ctx.Err() == nil
}

// replicaStore opens a replica's storage once per repository.
func (r *Repo) replicaStore(ctx context.Context, url string) (*storage.Store, error) {
	r.replicaMu.Lock()
	defer r.replicaMu.Unlock()
	if st, ok := r.replicaStores[url]; ok {
		return st, nil
	}
	st, err := r.opts.OpenStore(ctx, url)
	if err != nil {
		return nil, err
	}
	if r.replicaStores == nil {
		r.replicaStores = map[string]*storage.Store{}
	}
	r.replicaStores[url] = st
	return st, nil
}
