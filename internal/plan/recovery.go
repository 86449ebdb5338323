package plan

import (
	"fmt"
	"slices"
	"sort"
)

// Recovery says how the whole system is recovered to one instant: in which order,
// where each source goes, and which checks must hold afterwards.
type Recovery struct {
	// Order lists sources; default: relational (postgres, mssql), graph (neo4j), files.
	Order   []string                  `yaml:"order"`
	Targets map[string]RecoveryTarget `yaml:"targets"`
	Checks  []Check                   `yaml:"checks"`
}

// RecoveryTarget is where one source is recovered to.
type RecoveryTarget struct {
	DataDir  string `yaml:"data_dir"` // postgres: the data directory (started, left running)
	Port     int    `yaml:"port"`     // postgres: the port it listens on
	URI      string `yaml:"uri"`      // neo4j: the Bolt URI of the server to load into
	Database string `yaml:"database"` // neo4j: the database; mssql: the database name to restore as
	Dir      string `yaml:"dir"`      // files: the directory
}

// Check is a query that must return true after a recovery or a drill; :target is
// bound to the instant recovered to.
type Check struct {
	Source string `yaml:"source"`
	SQL    string `yaml:"sql"`
	Cypher string `yaml:"cypher"`
}

// Query returns the check's query, whichever language it is in.
func (c Check) Query() string {
	if c.SQL != "" {
		return c.SQL
	}
	return c.Cypher
}

// Drills are scheduled restore tests.
type Drills struct {
	Every   Duration `yaml:"every"`
	Sources []string `yaml:"sources"` // default: all sources
}

// RecoveryOrder returns the sources in recovery order.
func (p *Plan) RecoveryOrder() []string {
	if len(p.Recovery.Order) > 0 {
		return p.Recovery.Order
	}
	rank := map[string]int{KindPostgres: 0, KindMSSQL: 0, KindNeo4j: 1, KindFiles: 2}
	var names []string
	for _, s := range p.Sources {
		names = append(names, s.Name)
	}
	sort.SliceStable(names, func(i, j int) bool { return rank[p.Source(names[i]).Kind] < rank[p.Source(names[j]).Kind] })
	return names
}

func (v *validator) recovery(p *Plan) *Error {
	known := func(field, name string) *Error {
		if p.Source(name) == nil {
			return v.errf(field, "no source %q in the plan", name)
		}
		return nil
	}
	for i, name := range p.Recovery.Order {
		if err := known(fmt.Sprintf("recovery.order[%d]", i), name); err != nil {
			return err
		}
		if slices.Index(p.Recovery.Order, name) != i {
			return v.errf(fmt.Sprintf("recovery.order[%d]", i), "%s is listed twice", name)
		}
	}
	for name, t := range p.Recovery.Targets {
		f := "recovery.targets." + name
		if err := known(f, name); err != nil {
			return err
		}
		t := t
		switch p.Source(name).Kind {
		case KindPostgres:
			if t.DataDir == "" || t.Port <= 0 {
				return v.errf(f, "a postgres target needs data_dir and port")
			}
			if err := v.localField(f+".data_dir", &t.DataDir); err != nil {
				return err
			}
		case KindFiles:
			if t.Dir == "" {
				return v.errf(f, "a files target needs dir")
			}
			if err := v.localField(f+".dir", &t.Dir); err != nil {
				return err
			}
		case KindNeo4j:
			if t.URI == "" {
				return v.errf(f, "a neo4j target needs uri")
			}
		case KindMSSQL:
			if t.Database == "" {
				return v.errf(f, "an mssql target needs database")
			}
		}
		p.Recovery.Targets[name] = t
	}
	for i, c := range p.Recovery.Checks {
		f := fmt.Sprintf("recovery.checks[%d]", i)
		if err := known(f+".source", c.Source); err != nil {
			return err
		}
		kind := p.Source(c.Source).Kind
		switch {
		case (c.SQL == "") == (c.Cypher == ""):
			return v.errf(f, "give exactly one of sql and cypher")
		case c.SQL != "" && kind != KindPostgres && kind != KindMSSQL:
			return v.errf(f+".sql", "sql checks are for postgres and mssql sources, not %s", kind)
		case c.Cypher != "" && kind != KindNeo4j:
			return v.errf(f+".cypher", "cypher checks are for neo4j sources, not %s", kind)
		}
	}
	if p.Drills.Every < 0 {
		return v.errf("drills.every", "must be positive")
	}
	for i, name := range p.Drills.Sources {
		if err := known(fmt.Sprintf("drills.sources[%d]", i), name); err != nil {
			return err
		}
	}
	return nil
}
