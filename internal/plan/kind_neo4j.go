package plan

import (
	"net/url"
	"regexp"
	"strings"
)

// KindNeo4j is a Neo4j source: a graph exported online over Bolt (mode logical), or
// backed up with the server's own neo4j-admin (mode admin).
const KindNeo4j = "neo4j"

// Neo4j modes.
const (
	// Neo4jModeLogical exports nodes, relationships and schema over Bolt while the
	// database stays online; works with any edition. The default.
	Neo4jModeLogical = "logical"
	// Neo4jModeAdmin runs neo4j-admin: an online backup on Enterprise, a dump between
	// stop_command and start_command on Community.
	Neo4jModeAdmin = "admin"
)

// DefaultNeo4jDatabase is the database backed up when the plan names none.
const DefaultNeo4jDatabase = "neo4j"

// Neo4j database names: 3 to 63 characters, ASCII letters, digits, dots and dashes,
// starting with a letter (Neo4j's own rule, lower-cased by the server).
var neo4jDatabaseRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.-]{2,62}$`)

func neo4jFields() []string {
	return []string{"uri", "user", "password_env", "database", "mode", "neo4j_home", "stop_command", "start_command"}
}

// validateNeo4j checks a kind neo4j source and fills its defaults. Messages name the
// password's environment variable, never a password; a URI is never echoed.
func validateNeo4j(v *validator, field string, s *Source) *Error {
	switch s.Mode {
	case "":
		s.Mode = Neo4jModeLogical
	case Neo4jModeLogical, Neo4jModeAdmin:
	default:
		return v.errf(field+".mode", "unknown mode %q (want logical: online export over Bolt, or admin: neo4j-admin backup or dump)", s.Mode)
	}

	if s.URI == "" {
		return v.errf(field+".uri", "missing required field (the server's Bolt URI, bolt://HOST:7687 or neo4j://HOST:7687)")
	}
	if msg := checkBoltURI(s.URI); msg != "" {
		return v.errf(field+".uri", "%s", msg)
	}

	if s.PasswordEnv != "" && !envNameRE.MatchString(s.PasswordEnv) {
		// Not echoed: a password written here by mistake must not reach the logs.
		return v.errf(field+".password_env", "not a valid environment variable name (give the name of the variable that holds the password, not the password)")
	}
	switch {
	case s.User != "" && s.PasswordEnv == "":
		return v.errf(field+".password_env", "missing: user %q needs the environment variable that holds its password", s.User)
	case s.User == "" && s.PasswordEnv != "":
		return v.errf(field+".user", "missing: password_env is set, so give the user it belongs to")
	}

	switch {
	case s.Database == "":
		s.Database = DefaultNeo4jDatabase
	case !neo4jDatabaseRE.MatchString(s.Database):
		return v.errf(field+".database", "invalid database name %q (want 3 to 63 letters, digits, '.' or '-', starting with a letter)", s.Database)
	case strings.EqualFold(s.Database, "system"):
		return v.errf(field+".database", "the system database holds users, roles and the database list; back up a user database")
	}

	if s.Mode == Neo4jModeLogical {
		for _, k := range []string{"neo4j_home", "stop_command", "start_command"} {
			if v.sh.hasKey(field, k) {
				return v.errf(field+"."+k, "only valid with mode: admin")
			}
		}
		return nil
	}
	if s.Neo4jHome == "" {
		return v.errf(field+".neo4j_home", "missing required field with mode: admin (the Neo4j installation whose bin/neo4j-admin is run)")
	}
	if err := v.localField(field+".neo4j_home", &s.Neo4jHome); err != nil {
		return err
	}
	s.StopCommand = strings.TrimSpace(s.StopCommand)
	s.StartCommand = strings.TrimSpace(s.StartCommand)
	switch {
	case s.StopCommand != "" && s.StartCommand == "":
		return v.errf(field+".start_command", "missing: stop_command is set, and the server must be started again after the dump")
	case s.StopCommand == "" && s.StartCommand != "":
		return v.errf(field+".stop_command", "missing: start_command is set, but nothing stops the server for the dump")
	}
	return nil
}

// checkBoltURI returns why raw is not a usable Bolt URI ("" when it is). The URI is
// not repeated: it could hold a password.
func checkBoltURI(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "not a valid URI (want bolt://HOST:PORT or neo4j://HOST:PORT)"
	}
	switch strings.ToLower(u.Scheme) {
	case "bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc":
	default:
		return "unsupported scheme (want bolt, bolt+s, bolt+ssc, neo4j, neo4j+s or neo4j+ssc)"
	}
	if u.User != nil {
		return "must not hold a user name or password: use user and password_env"
	}
	if u.Hostname() == "" {
		return "missing host (want bolt://HOST:PORT)"
	}
	return ""
}
