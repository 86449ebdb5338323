package neo4j

import (
	"context"
	"fmt"
	"time"

	neo4jdriver "github.com/neo4j/neo4j-go-driver/v5/neo4j"
)

// HealthResult is the outcome of one health query.
type HealthResult struct {
	Query string
	Rows  int
	// First is the first row's first value, formatted (a count, say).
	First string
	Took  time.Duration
	Err   error
}

// Health runs read-only health queries against a database (for drills: after a restore,
// the seed's own checks): the node and relationship counts first, then each of queries
// in a read transaction, so they cannot change the graph. target is a Bolt URI ("" for
// the plan's uri) and database a name ("" for the plan's). The error is for a server that
// cannot be reached; a failing query is reported in its result.
func (e *Engine) Health(ctx context.Context, target, database string, queries []string) ([]HealthResult, error) {
	sess, _, done, err := e.readSession(ctx, target, database)
	if err != nil {
		return nil, err
	}
	defer done()
	all := append([]string{"MATCH (n) RETURN count(n) AS nodes", "MATCH ()-[r]->() RETURN count(r) AS relationships"}, queries...)
	out := make([]HealthResult, 0, len(all))
	for _, q := range all {
		t0 := time.Now()
		res := HealthResult{Query: q}
		_, res.Err = sess.ExecuteRead(ctx, func(tx neo4jdriver.ManagedTransaction) (any, error) {
			res.Rows, res.First = 0, ""
			r, err := tx.Run(ctx, q, nil)
			if err != nil {
				return nil, err
			}
			for r.Next(ctx) {
				if res.Rows == 0 && len(r.Record().Values) > 0 {
					res.First = fmt.Sprint(r.Record().Values[0])
				}
				res.Rows++
			}
			return nil, r.Err()
		})
		res.Took = time.Since(t0)
		out = append(out, res)
	}
	return out, nil
}
