package agent

import "time"

// Clock is where the agent gets the time and waits for it; tests drive a fake one.
type Clock interface {
	Now() time.Time
	// NewTimer fires once, d from now (at once when d <= 0).
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer of a Clock.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it stopped it.
	Stop() bool
}

// RealClock is the system clock.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// sleep waits d on clk, or until done is closed; it reports whether d elapsed.
func sleep(clk Clock, d time.Duration, done <-chan struct{}) bool {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-done:
		return false
	}
}

// ClockFunc is the system's timers with the time read from now (a CLI's
// injectable clock).
func ClockFunc(now func() time.Time) Clock { return funcClock{now} }

type funcClock struct{ now func() time.Time }

func (c funcClock) Now() time.Time                 { return c.now() }
func (c funcClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }
