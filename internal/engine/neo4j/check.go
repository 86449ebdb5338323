package neo4j

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	neo4jdriver "github.com/neo4j/neo4j-go-driver/v5/neo4j"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
)

// Check runs a recovery or drill check on the database req names (req.Target as
// the Bolt URI, else the plan's): a read query whose first value must be true;
// :target is bound to at as $target.
func (e *Engine) Check(ctx context.Context, req engine.RestoreRequest, query string, at time.Time) (bool, error) {
	sess, database, done, err := e.readSession(ctx, req.Target, req.Database)
	if err != nil {
		return false, err
	}
	defer done()
	q := strings.ReplaceAll(query, ":target", "$target")
	v, err := sess.ExecuteRead(ctx, func(tx neo4jdriver.ManagedTransaction) (any, error) {
		return firstValue(ctx, tx, q, map[string]any{"target": at.UTC()}) // Bolt rejects the zone "Local"
	})
	if err != nil {
		return false, fmt.Errorf("check %q on %s: %w", query, database, err)
	}
	ok, isBool := v.(bool)
	if !isBool {
		return false, fmt.Errorf("check %q returned %v, not true or false", query, v)
	}
	return ok, nil
}

// readSession opens a read session on a database (target and database default to
// the plan's); done closes it and its driver.
func (e *Engine) readSession(ctx context.Context, target, database string) (neo4jdriver.SessionWithContext, string, func(), error) {
	return e.session(ctx, target, database, neo4jdriver.AccessModeRead)
}

func (e *Engine) session(ctx context.Context, target, database string, mode neo4jdriver.AccessMode) (neo4jdriver.SessionWithContext, string, func(), error) {
	if target == "" {
		target = e.src.URI
	}
	if database == "" {
		database = e.src.Database
	}
	drv, err := e.connect(ctx, target)
	if err != nil {
		return nil, "", nil, err
	}
	sess := drv.NewSession(ctx, neo4jdriver.SessionConfig{DatabaseName: database, AccessMode: mode})
	done := func() {
		sess.Close(context.WithoutCancel(ctx))
		drv.Close(context.WithoutCancel(ctx))
	}
	return sess, database, done, nil
}

var _ engine.Stopper = (*Engine)(nil)

// StopRestored empties the database a drill loaded a logical backup into (the
// recovery target the plan lends to drills), so that a drill leaves nothing behind.
// The source's own database, and admin-mode restores (into the server's own store),
// are never touched.
func (e *Engine) StopRestored(ctx context.Context, req engine.RestoreRequest) error {
	if e.src.Mode == plan.Neo4jModeAdmin {
		return nil
	}
	target, database := cmp.Or(req.Target, e.src.URI), cmp.Or(req.Database, e.src.Database)
	if target == e.src.URI && database == e.src.Database {
		return nil
	}
	sess, _, done, err := e.session(ctx, target, database, neo4jdriver.AccessModeWrite)
	if err != nil {
		return err
	}
	defer done()
	where := fmt.Sprintf("database %s at %s", database, redactURI(target))
	st, err := databaseState(ctx, sess)
	if err != nil {
		return fmt.Errorf("clean up the drill's %s: %w", where, err)
	}
	if st.empty() {
		return nil
	}
	if err := emptyDatabase(ctx, sess, st); err != nil {
		return fmt.Errorf("clean up the drill's %s: %w", where, err)
	}
	return nil
}

// firstValue runs a query that returns one record and returns its first value.
func firstValue(ctx context.Context, tx neo4jdriver.ManagedTransaction, q string, params map[string]any) (any, error) {
	res, err := tx.Run(ctx, q, params)
	if err != nil {
		return nil, err
	}
	rec, err := res.Single(ctx)
	if err != nil {
		return nil, err
	}
	return rec.Values[0], nil
}
