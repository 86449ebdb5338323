// Package storage opens object stores by URL and gives the repository one small,
// retrying interface over them. It knows nothing of backups or databases.
//
// Two layers:
//   - Driver: the raw operations of one backend (local disk, or gocloud.dev/blob for
//     azblob://, s3://, gs://). Drivers do not retry.
//   - Store: wraps a Driver with retries (backoff and jitter) for transient errors and
//     offers streaming writers whose object appears atomically on Commit.
//
// Open takes file:///path (or a plain path), azblob://container, s3://bucket or
// gs://bucket. Keys follow the same rules on every backend (relative, slash-separated,
// no "." or ".." segments, no backslashes, control characters or any of "#%?), so a
// repository can be copied from one to another. Faulty wraps any Driver with
// injected failures for other packages' tests; storagetest holds the suite every
// backend passes.
package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors every driver maps its own errors to.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrExists: PutOptions.IfNotExist was set and the object already exists.
	ErrExists = errors.New("object already exists")
)

// TransientError marks an error worth retrying (timeouts, 5xx, throttling, resets).
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// IsTransient reports whether err (or anything it wraps) is marked transient.
func IsTransient(err error) bool {
	var t *TransientError
	return errors.As(err, &t)
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
	// Tier is the access tier or storage class when the backend has one ("" otherwise).
	Tier string
	// Rehydrating is true while an archived object is being brought back online.
	Rehydrating bool
	// LockedUntil is the end of the object's retention lock (zero: none).
	LockedUntil time.Time
}

// PutOptions tune a single write.
type PutOptions struct {
	// IfNotExist makes the write fail with ErrExists when the key exists. Drivers
	// implement it atomically across processes and hosts (used for locks).
	IfNotExist bool
	// Tier is an access tier / storage class name ("hot", "cool", "archive", ...);
	// "" keeps the backend default.
	Tier string
	// RetainUntil, when set, writes the object with a retention lock until then
	// (Azure version-level immutability, S3 Object Lock in governance mode, GCS
	// object retention): it cannot be deleted or overwritten before.
	RetainUntil time.Time
}

// Driver is one storage backend. Keys are slash-separated, relative, never start
// with "/" and never contain "..". All methods honour ctx.
type Driver interface {
	// Put stores exactly size bytes read from body under key. The object becomes
	// visible only complete: readers never see a partial object. On error nothing
	// is visible (a previous object under key, if any, is left as it was).
	Put(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) error
	// Get reads length bytes from offset; length < 0 reads to the end.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Stat returns the object's info, or ErrNotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix, in lexical key order.
	// Returning an error from fn stops the listing and List returns that error.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes the object. Deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// String names the backend location for messages (never includes secrets).
	String() string
	Close() error
}

// ObjectWriter receives an object's bytes; the object appears atomically on Commit.
// Abort (or a cancelled context) discards everything written. Exactly one of Commit
// or Abort must be called; calling Abort after Commit is a no-op.
type ObjectWriter interface {
	io.Writer
	Commit() error
	Abort() error
}

// Rehydrater is implemented by drivers whose archive tier must be brought back
// online before an object can be read (Azure Archive, S3 Glacier classes).
type Rehydrater interface {
	// Rehydrate starts bringing the object back; priority is "standard" or "high".
	Rehydrate(ctx context.Context, key, priority string) error
}

// Tierer is implemented by drivers that can move a stored object to another tier
// in place (Azure SetTier, an S3 copy onto itself with a new storage class).
type Tierer interface {
	SetTier(ctx context.Context, key, tier string) error
	// CanSetTier reports whether SetTier works for this store.
	CanSetTier() bool
}

// StreamDriver is implemented by drivers that can take a stream of unknown size
// directly, without retries, such as the local disk. Store uses it to avoid spooling.
type StreamDriver interface {
	NewWriter(ctx context.Context, key string, opts PutOptions) (ObjectWriter, error)
}
