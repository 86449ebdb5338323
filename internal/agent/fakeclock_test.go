package agent

import (
	"sort"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when a test sets it.
type fakeClock struct {
	mu     sync.Mutex
	cond   *sync.Cond
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clk *fakeClock
	at  time.Time
	c   chan time.Time
}

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{now: t}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clk: c, at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	c.cond.Broadcast()
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clk
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			c.cond.Broadcast()
			return true
		}
	}
	return false
}

// Set moves the clock to t and fires the timers due by then, earliest first.
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
	var keep []*fakeTimer
	for _, x := range c.timers {
		if !x.at.After(t) {
			x.c <- t
		} else {
			keep = append(keep, x)
		}
	}
	c.timers = keep
	c.cond.Broadcast()
}

// Advance moves the clock by d.
func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// waitTimers blocks until at least n timers are pending (failing the test after
// 30 s of real time) and returns the earliest deadline among them.
func (c *fakeClock) waitTimers(t testing.TB, n int) time.Time {
	t.Helper()
	c.mu.Lock()
	ready := len(c.timers) >= n
	c.mu.Unlock()
	if ready {
		return c.earliest()
	}
	deadline := time.Now().Add(30 * time.Second)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // wakes the wait below now and then to look at the deadline
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				c.mu.Lock()
				c.cond.Broadcast()
				c.mu.Unlock()
			}
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.timers) < n {
		if time.Now().After(deadline) {
			t.Fatalf("fake clock: %d timers pending after 30 s, want %d", len(c.timers), n)
		}
		c.cond.Wait()
	}
	earliest := c.timers[0].at
	for _, x := range c.timers {
		if x.at.Before(earliest) {
			earliest = x.at
		}
	}
	return earliest
}

func (c *fakeClock) earliest() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	earliest := c.timers[0].at
	for _, x := range c.timers {
		if x.at.Before(earliest) {
			earliest = x.at
		}
	}
	return earliest
}
