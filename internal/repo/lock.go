package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hartonomous/hartvault/internal/storage"
)

// LockTTL is how long a lock stays valid without a refresh; the holder refreshes it
// every LockTTL/4, so a lock past its expiry belongs to a run that died.
const LockTTL = 5 * time.Minute

// LockInfo is the content of a lock object.
type LockInfo struct {
	Owner   string    `json:"owner"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Purpose string    `json:"purpose"`
	Since   time.Time `json:"since"`
	Expires time.Time `json:"expires"`
}

// LockedError says another run holds the lock.
type LockedError struct {
	Source string
	Info   LockInfo
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("source %s is locked by %s pid %d since %s (%s)", e.Source, e.Info.Host, e.Info.PID,
		e.Info.Since.Local().Format(time.RFC3339), e.Info.Purpose)
}

// Lock is a held source lock, refreshed in the background until Release.
type Lock struct {
	r      *Repo
	source string
	key    string
	info   LockInfo
	stop   chan struct{}
	done   chan struct{}

	mu   sync.Mutex
	lost error
}

func lockKey(source string) string { return "locks/" + source + ".lock" }

// Lock takes the writer lock of source: a create-if-absent object naming owner,
// host, pid and expiry. A lock left by a dead run (past expiry, or its pid gone on
// this host) is taken over; otherwise a *LockedError says who holds it.
func (r *Repo) Lock(ctx context.Context, source, purpose string) (*Lock, error) {
	now := r.opts.Now().UTC()
	l := &Lock{r: r, source: source, key: lockKey(source), stop: make(chan struct{}), done: make(chan struct{})}
	l.info = LockInfo{Owner: randomHex(12), Host: r.host, PID: os.Getpid(), Purpose: purpose, Since: now, Expires: now.Add(LockTTL)}
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	go l.refresh()
	return l, nil
}

func (l *Lock) acquire(ctx context.Context) error {
	st := l.r.store
	for attempt := 0; attempt < 3; attempt++ {
		data, _ := json.Marshal(l.info)
		err := st.Put(ctx, l.key, data, storage.PutOptions{IfNotExist: true})
		if err == nil {
			return nil
		}
		if !errors.Is(err, storage.ErrExists) {
			return fmt.Errorf("take lock %s: %w", l.key, err)
		}
		held, err := l.read(ctx)
		if errors.Is(err, storage.ErrNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			return err
		}
		if held.Owner == l.info.Owner {
			return nil // our own write, reported as failed and retried
		}
		if !l.r.stale(held) {
			return &LockedError{Source: l.source, Info: held}
		}
		if err := l.takeOver(ctx, held); err != nil {
			return err
		}
	}
	return fmt.Errorf("take lock %s: it keeps changing hands", l.key)
}

// stale reports whether a lock's holder is gone.
func (r *Repo) stale(held LockInfo) bool {
	if r.opts.Now().After(held.Expires) {
		return true
	}
	return held.Host == r.host && held.PID != os.Getpid() && !processAlive(held.PID)
}

// takeOver removes a stale lock. Several runs may find the same stale lock: only the
// one that creates the takeover marker for it removes it, so none deletes a lock
// another run has just taken.
func (l *Lock) takeOver(ctx context.Context, held LockInfo) error {
	st := l.r.store
	marker := l.key + ".takeover-" + held.Owner
	mdata, _ := json.Marshal(LockInfo{Owner: l.info.Owner, Host: l.info.Host, PID: l.info.PID, Since: l.info.Since, Expires: l.r.opts.Now().Add(LockTTL)})
	err := st.Put(ctx, marker, mdata, storage.PutOptions{IfNotExist: true})
	if errors.Is(err, storage.ErrExists) {
		raw, rerr := st.ReadAll(ctx, marker)
		var m LockInfo
		if rerr == nil && json.Unmarshal(raw, &m) == nil && m.Owner != l.info.Owner && !l.r.stale(m) {
			return &LockedError{Source: l.source, Info: m}
		}
		// A marker left by a taker that died: ours now.
		if err := st.Put(ctx, marker, mdata, storage.PutOptions{}); err != nil {
			return fmt.Errorf("take over lock %s: %w", l.key, err)
		}
	} else if err != nil {
		return fmt.Errorf("take over lock %s: %w", l.key, err)
	}
	defer st.Delete(context.WithoutCancel(ctx), marker)
	cur, err := l.read(ctx)
	if err == nil && cur.Owner == held.Owner {
		l.r.log.Info("taking over stale lock", "source", l.source, "host", held.Host, "pid", held.PID, "expired", held.Expires)
		if err := st.Delete(ctx, l.key); err != nil {
			return fmt.Errorf("remove stale lock %s: %w", l.key, err)
		}
	}
	return nil
}

func (l *Lock) read(ctx context.Context) (LockInfo, error) {
	raw, err := l.r.store.ReadAll(ctx, l.key)
	if err != nil {
		return LockInfo{}, err
	}
	var info LockInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		return LockInfo{}, fmt.Errorf("lock %s is not valid: %w", l.key, err)
	}
	return info, nil
}

func (l *Lock) refresh() {
	defer close(l.done)
	t := time.NewTicker(LockTTL / 4)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), LockTTL/4)
			err := l.Check(ctx)
			if err == nil {
				l.info.Expires = l.r.opts.Now().UTC().Add(LockTTL)
				data, _ := json.Marshal(l.info)
				if perr := l.r.store.Put(ctx, l.key, data, storage.PutOptions{}); perr != nil {
					l.r.log.Warn("refresh lock", "key", l.key, "err", perr)
				}
			}
			cancel()
		}
	}
}

// Check confirms the lock is still ours (it was not taken over while this run was
// stalled past its expiry).
func (l *Lock) Check(ctx context.Context) error {
	l.mu.Lock()
	lost := l.lost
	l.mu.Unlock()
	if lost != nil {
		return lost
	}
	cur, err := l.read(ctx)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("check lock %s: %w", l.key, err)
	}
	if err != nil || cur.Owner != l.info.Owner {
		l.mu.Lock()
		l.lost = fmt.Errorf("lost the lock on %s: another run took it over", l.source)
		lost = l.lost
		l.mu.Unlock()
		return lost
	}
	return nil
}

// Release stops refreshing and removes the lock if it is still ours.
func (l *Lock) Release(ctx context.Context) error {
	select {
	case <-l.stop:
		return nil
	default:
	}
	close(l.stop)
	<-l.done
	cur, err := l.read(ctx)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return err
	}
	if cur.Owner != l.info.Owner {
		return nil
	}
	return l.r.store.Delete(ctx, l.key)
}

// Source is the locked source.
func (l *Lock) Source() string { return l.source }
