package plan

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// neo4jHead is a repository block (lines 1-3) and the start of a neo4j source (4-6).
const neo4jHead = repo + "sources:\n  - name: provenance\n    kind: neo4j\n"

func TestNeo4jSourceFromIssue(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses Unix paths")
	}
	p := mustParse(t, "/etc/hv/hartvault.yaml", neo4jHead+`    uri: bolt://127.0.0.1:7687
    user: neo4j
    password_env: NEO4J_PASSWORD
    database: neo4j
    mode: admin
    neo4j_home: /var/lib/neo4j
    stop_command: "systemctl stop neo4j"
    start_command: "systemctl start neo4j"
`)
	s := p.Source("provenance")
	want := Source{Name: "provenance", Kind: KindNeo4j, Line: s.Line, URI: "bolt://127.0.0.1:7687", User: "neo4j",
		PasswordEnv: "NEO4J_PASSWORD", Database: "neo4j", Mode: Neo4jModeAdmin, Neo4jHome: "/var/lib/neo4j",
		StopCommand: "systemctl stop neo4j", StartCommand: "systemctl start neo4j"}
	if s.URI != want.URI || s.User != want.User || s.PasswordEnv != want.PasswordEnv || s.Database != want.Database ||
		s.Mode != want.Mode || s.Neo4jHome != want.Neo4jHome || s.StopCommand != want.StopCommand || s.StartCommand != want.StartCommand {
		t.Fatalf("source: %+v\nwant %+v", *s, want)
	}
	if s.Line != 5 {
		t.Errorf("line %d, want 5", s.Line)
	}
}

func TestNeo4jDefaults(t *testing.T) {
	p := mustParse(t, "/etc/hv/hartvault.yaml", neo4jHead+"    uri: neo4j+s://graph.example.com\n")
	s := p.Sources[0]
	if s.Mode != Neo4jModeLogical || s.Database != DefaultNeo4jDatabase || s.User != "" || s.PasswordEnv != "" {
		t.Errorf("defaults: mode %q database %q user %q password_env %q", s.Mode, s.Database, s.User, s.PasswordEnv)
	}
	// A relative neo4j_home is relative to the plan file.
	p = mustParse(t, filepath.Join(t.TempDir(), "hv.yaml"), neo4jHead+"    uri: bolt://db:7687\n    mode: admin\n    neo4j_home: neo4j\n")
	if home := p.Sources[0].Neo4jHome; !filepath.IsAbs(home) || filepath.Base(home) != "neo4j" {
		t.Errorf("neo4j_home %q: want an absolute path", home)
	}
}

func TestNeo4jErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"", "hartvault.yaml:5: sources[0].uri: missing required field"},
		{"    uri: http://db:7474\n", "hartvault.yaml:7: sources[0].uri: unsupported scheme"},
		{"    uri: bolt://neo4j:secret@db:7687\n", "hartvault.yaml:7: sources[0].uri: must not hold a user name or password"},
		{"    uri: bolt://\n", "hartvault.yaml:7: sources[0].uri: missing host"},
		{"    uri: bolt://db\n    mode: dump\n", "hartvault.yaml:8: sources[0].mode: unknown mode \"dump\""},
		{"    uri: bolt://db\n    user: neo4j\n", "hartvault.yaml:5: sources[0].password_env: missing: user \"neo4j\""},
		{"    uri: bolt://db\n    password_env: PW\n", "hartvault.yaml:5: sources[0].user: missing"},
		{"    uri: bolt://db\n    user: neo4j\n    password_env: hunter2!\n", "hartvault.yaml:9: sources[0].password_env: not a valid environment variable name"},
		{"    uri: bolt://db\n    database: 1db\n", "hartvault.yaml:8: sources[0].database: invalid database name"},
		{"    uri: bolt://db\n    database: system\n", "hartvault.yaml:8: sources[0].database: the system database"},
		{"    uri: bolt://db\n    neo4j_home: /opt/neo4j\n", "hartvault.yaml:8: sources[0].neo4j_home: only valid with mode: admin"},
		{"    uri: bolt://db\n    stop_command: x\n", "hartvault.yaml:8: sources[0].stop_command: only valid with mode: admin"},
		{"    uri: bolt://db\n    mode: admin\n", "hartvault.yaml:5: sources[0].neo4j_home: missing required field"},
		{"    uri: bolt://db\n    mode: admin\n    neo4j_home: /opt/neo4j\n    stop_command: systemctl stop neo4j\n", "hartvault.yaml:5: sources[0].start_command: missing"},
		{"    uri: bolt://db\n    mode: admin\n    neo4j_home: /opt/neo4j\n    start_command: systemctl start neo4j\n", "hartvault.yaml:5: sources[0].stop_command: missing"},
		{"    uri: bolt://db\n    paths: [/x]\n", "hartvault.yaml:8: sources[0].paths: field paths is not valid for kind neo4j"},
	} {
		got := parseError(t, neo4jHead+tc.body)
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("body %q:\n got %s\nwant %s...", tc.body, got, tc.want)
		}
		if strings.Contains(got, "secret") || strings.Contains(got, "hunter2") {
			t.Errorf("message repeats a secret: %s", got)
		}
	}
}

func TestNeo4jFieldsRejectedElsewhere(t *testing.T) {
	got := parseError(t, repo+"sources:\n  - name: a\n    kind: files\n    paths: [/x]\n    uri: bolt://db\n")
	if want := "hartvault.yaml:8: sources[0].uri: field uri is not valid for kind files"; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}
