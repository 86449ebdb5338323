package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// FaultOptions configure NewFaulty.
type FaultOptions struct {
	// Rate is the probability that an operation gets a fault (0..1).
	Rate float64
	// Seed makes the sequence of faults reproducible for a given sequence of
	// calls.
	Seed int64
	// Permanent injects non-transient errors ("no space left on device")
	// instead of *TransientError, to check that they are not retried.
	Permanent bool
}

// Faulty wraps a Driver and makes some of its operations fail, in the ways
// networks and services do: before the operation; a Put that consumes part of
// the body and then fails (nothing becomes visible); a Get whose reader fails
// after some bytes; a List that fails after delivering some keys; and an
// operation that takes effect but reports a transient error (ambiguous
// success). It is safe for concurrent use. It deliberately does not implement
// StreamDriver, so that a Store spools and retries through it.
type Faulty struct {
	d        Driver
	o        FaultOptions
	mu       sync.Mutex
	rng      *rand.Rand
	injected atomic.Int64
}

var _ Driver = (*Faulty)(nil)

// NewFaulty wraps d.
func NewFaulty(d Driver, o FaultOptions) *Faulty {
	return &Faulty{d: d, o: o, rng: rand.New(rand.NewPCG(uint64(o.Seed), 0x68617274))}
}

// Injected returns how many faults were injected so far.
func (f *Faulty) Injected() int64 { return f.injected.Load() }

// Unwrap returns the wrapped driver.
func (f *Faulty) Unwrap() Driver { return f.d }

// String implements Driver.
func (f *Faulty) String() string { return "faulty(" + f.d.String() + ")" }

// Close implements Driver.
func (f *Faulty) Close() error { return f.d.Close() }

// Create forwards to the wrapped driver's Create, if it has one.
func (f *Faulty) Create(ctx context.Context) error {
	if c, ok := f.d.(interface{ Create(context.Context) error }); ok {
		return c.Create(ctx)
	}
	return nil
}

type faultMode int

const (
	faultNone   faultMode = iota
	faultBefore           // fail without doing anything
	faultMidway           // partial body / partial read / partial listing
	faultAfter            // do it, then report a transient error
)

// roll decides the fault for one operation and draws a number in [0, n) for
// the partial modes (n > 0).
func (f *Faulty) roll(modes int, n int64) (faultMode, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rng.Float64() >= f.o.Rate {
		return faultNone, 0
	}
	m := faultMode(1 + f.rng.IntN(modes))
	var k int64
	if n > 0 {
		k = f.rng.Int64N(n)
	}
	return m, k
}

// errNoSpace is the permanent fault: a real, non-retryable failure.
var errNoSpace = errors.New("no space left on device")

func (f *Faulty) fault(op, key, how string) error {
	f.injected.Add(1)
	if f.o.Permanent {
		return fmt.Errorf("%s: %s %q: injected fault (%s): %w", f, op, key, how, errNoSpace)
	}
	return &TransientError{Err: fmt.Errorf("%s: %s %q: injected transient fault (%s)", f, op, key, how)}
}

// Put implements Driver.
func (f *Faulty) Put(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) error {
	mode, k := f.roll(3, size)
	switch mode {
	case faultBefore:
		return f.fault("put", key, "before the write")
	case faultMidway:
		if size == 0 {
			return f.fault("put", key, "before the write")
		}
		// The wrapped driver sees a body that breaks after k < size bytes and
		// must leave nothing behind.
		fe := f.fault("put", key, fmt.Sprintf("body broke after %d of %d bytes", k, size))
		_ = f.d.Put(ctx, key, &breakingReader{r: body, left: k, err: fe}, size, opts)
		return fe
	case faultAfter:
		if err := f.d.Put(ctx, key, body, size, opts); err != nil {
			return err
		}
		return f.fault("put", key, "the write landed but the answer was lost")
	}
	return f.d.Put(ctx, key, body, size, opts)
}

// breakingReader returns err once left bytes have been read.
type breakingReader struct {
	r    io.Reader
	left int64
	err  error
}

func (b *breakingReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// Get implements Driver.
func (f *Faulty) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	mode, k := f.roll(2, 1<<20)
	if mode == faultBefore {
		return nil, f.fault("get", key, "before the read")
	}
	rc, err := f.d.Get(ctx, key, offset, length)
	if err != nil || mode != faultMidway {
		return rc, err
	}
	return &faultyReader{f: f, rc: rc, key: key, left: k}, nil
}

// faultyReader fails after left bytes, if the object is that long.
type faultyReader struct {
	f    *Faulty
	rc   io.ReadCloser
	key  string
	left int64
	err  error
}

func (r *faultyReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.left <= 0 {
		r.err = r.f.fault("read", r.key, "connection reset mid-stream")
		return 0, r.err
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.rc.Read(p)
	r.left -= int64(n)
	return n, err
}

func (r *faultyReader) Close() error { return r.rc.Close() }

// Stat implements Driver.
func (f *Faulty) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if mode, _ := f.roll(1, 0); mode != faultNone {
		return ObjectInfo{}, f.fault("stat", key, "before the request")
	}
	return f.d.Stat(ctx, key)
}

// List implements Driver.
func (f *Faulty) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	mode, k := f.roll(2, 8)
	switch mode {
	case faultBefore:
		return f.fault("list", prefix, "before the listing")
	case faultMidway:
		var fe error
		n := int64(0)
		err := f.d.List(ctx, prefix, func(info ObjectInfo) error {
			if n == k {
				fe = f.fault("list", prefix, fmt.Sprintf("after %d keys", k))
				return fe
			}
			n++
			return fn(info)
		})
		if fe != nil {
			return fe
		}
		return err
	}
	return f.d.List(ctx, prefix, fn)
}

// Delete implements Driver.
func (f *Faulty) Delete(ctx context.Context, key string) error {
	switch mode, _ := f.roll(2, 0); mode {
	case faultBefore:
		return f.fault("delete", key, "before the request")
	case faultMidway:
		if err := f.d.Delete(ctx, key); err != nil {
			return err
		}
		return f.fault("delete", key, "the delete happened but the answer was lost")
	}
	return f.d.Delete(ctx, key)
}
