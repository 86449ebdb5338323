// Package proc holds what the test servers (Azurite, the Neo4j harness) share about
// the processes they start: a process group to stop everything they spawn, and a
// bounded buffer of their output for failure messages.
package proc

import (
	"bytes"
	"sync"
)

// Output collects a process's output for error messages, keeping the first Limit
// bytes (256 KiB when zero). It is safe for concurrent use.
type Output struct {
	Limit int
	mu    sync.Mutex
	buf   bytes.Buffer
}

func (b *Output) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit := b.Limit
	if limit == 0 {
		limit = 256 << 10
	}
	if b.buf.Len() > limit {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *Output) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() == 0 {
		return "(no output)"
	}
	return b.buf.String()
}
