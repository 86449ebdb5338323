package parallel

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestRunDoesEveryItemAndFinishesEveryWorker(t *testing.T) {
	var sum, finished atomic.Int64
	items := make([]int, 1000)
	for i := range items {
		items[i] = i
	}
	err := Run(context.Background(), items, 3, func(ctx context.Context) Worker[int] {
		return Worker[int]{Do: func(i int) error { sum.Add(int64(i)); return nil }, Finish: func() error { finished.Add(1); return nil }}
	})
	if err != nil || sum.Load() != 999*1000/2 || finished.Load() != 3 {
		t.Fatalf("err %v, sum %d, finished %d", err, sum.Load(), finished.Load())
	}
}

func TestRunStopsAtTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	var done atomic.Int64
	items := make([]int, 10000)
	err := Run(context.Background(), items, 2, func(ctx context.Context) Worker[int] {
		return Worker[int]{Do: func(int) error {
			if done.Add(1) == 10 {
				return boom
			}
			return ctx.Err()
		}}
	})
	if !errors.Is(err, boom) || done.Load() > 100 {
		t.Fatalf("err %v after %d items", err, done.Load())
	}
}
