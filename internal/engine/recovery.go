package engine

import (
	"context"
	"time"
)

// Checker is implemented by engines that can run a health query against a restored
// target (the one req describes); the query's single value must be true. :target
// in the query is bound to at.
type Checker interface {
	Check(ctx context.Context, req RestoreRequest, query string, at time.Time) (bool, error)
}

// Stopper is implemented by engines whose restores leave something running (a
// started PostgreSQL cluster) that a drill must stop before cleaning up.
type Stopper interface {
	StopRestored(ctx context.Context, req RestoreRequest) error
}
