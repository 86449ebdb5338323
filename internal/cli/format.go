package cli

import (
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
)

// bytesIEC formats a byte count for people.
func bytesIEC(n int64) string { return engine.Bytes(n) }

func localTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d > time.Minute:
		return d.Round(time.Second)
	case d > time.Second:
		return d.Round(10 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}
