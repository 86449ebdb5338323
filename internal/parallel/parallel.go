// Package parallel runs work on a fixed number of goroutines, stopping at the first
// error: the one loop the backup, restore and verify paths share.
package parallel

import (
	"context"
	"sync"
)

// Worker processes items for one goroutine. Finish (may be nil) runs once the
// goroutine has no more items, even after an error, to release what it holds.
type Worker[T any] struct {
	Do     func(item T) error
	Finish func() error
}

// Run feeds items, in order, to workers goroutines, each built by newWorker with a
// context cancelled at the first error. It returns the first error, or ctx's.
func Run[T any](ctx context.Context, items []T, workers int, newWorker func(ctx context.Context) Worker[T]) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan T)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	for w := 0; w < max(workers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk := newWorker(ctx)
			for item := range work {
				if err := wk.Do(item); err != nil {
					fail(err)
				}
			}
			if wk.Finish != nil {
				if err := wk.Finish(); err != nil {
					fail(err)
				}
			}
		}()
	}
feed:
	for _, item := range items {
		select {
		case work <- item:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
