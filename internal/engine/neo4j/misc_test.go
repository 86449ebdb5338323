package neo4j

import (
	"strings"
	"testing"
)

func TestURIs(t *testing.T) {
	for in, want := range map[string]string{
		"bolt://db:7687":               "bolt://db:7687",
		"neo4j://neo4j:secret@db:7687": "neo4j://db:7687",
		"bolt://db/x@y":                "bolt://db/x@y",
		"not a uri":                    "not a uri",
	} {
		if got := redactURI(in); got != want {
			t.Errorf("redactURI(%q) = %q, want %q", in, got, want)
		}
	}
	for uri, ok := range map[string]bool{"bolt://db:7687": true, "NEO4J+S://db": true, "/srv/restore": false,
		"bolt://u:p@db": false, "http://db:7474": false} {
		if msg := checkTargetURI(uri); (msg == "") != ok {
			t.Errorf("checkTargetURI(%q) = %q", uri, msg)
		}
	}
}

func TestCountListAndBitset(t *testing.T) {
	if got := countList(map[string]int64{"B": 2, "A": 2, "C": 5}); got != "C 5, A 2, B 2" {
		t.Errorf("countList: %q", got)
	}
	if got := countList(nil); got != "none" {
		t.Errorf("countList(nil): %q", got)
	}
	var s bitset
	for _, id := range []int64{0, 63, 64, 1 << 20, 5} {
		s.set(id)
	}
	s.set(-1)
	for id, want := range map[int64]bool{0: true, 63: true, 64: true, 1 << 20: true, 5: true, 6: false, -1: false, 1 << 30: false} {
		if s.has(id) != want {
			t.Errorf("has(%d) = %v", id, !want)
		}
	}
}

func TestQueries(t *testing.T) {
	q := nodeQuery([]string{"Entity", "we`ird"})
	if !strings.Contains(q, "CREATE (n:`__HartvaultRestore`:`Entity`:`we``ird`)") || !strings.Contains(q, "n.`__hartvault_id` = r.n") {
		t.Errorf("node query: %s", q)
	}
	if q := nodeQuery([]string{""}); !strings.Contains(q, "CREATE (n:`__HartvaultRestore`)") {
		t.Errorf("unlabelled node query: %s", q)
	}
	q = relQuery("USED")
	if !strings.Contains(q, "MATCH (a:`__HartvaultRestore` {`__hartvault_id`: r.s})") || !strings.Contains(q, "CREATE (a)-[x:`USED`]->(b)") {
		t.Errorf("relationship query: %s", q)
	}
}

func TestParseChunk(t *testing.T) {
	good := `{"hartvault":"neo4j-export","format":1,"kind":"nodes","chunk":0}
{"id":"4:x:1","n":1,"labels":["A"],"props":{"k":["int",1]}}
{"end":true,"records":1}
`
	var got []any
	n, err := parseChunk("c", "nodes", []byte(good), func(v any) error { got = append(got, v); return nil })
	if err != nil || n != 1 || len(got) != 1 || *got[0].(*nodeRecord).N != 1 {
		t.Fatalf("good chunk: %d %v %v", n, err, got)
	}
	for name, bad := range map[string]string{
		"cut":          good[:len(good)-25],
		"no newline":   strings.TrimSuffix(good, "\n"),
		"wrong kind":   strings.Replace(good, `"kind":"nodes"`, `"kind":"relationships"`, 1),
		"newer format": strings.Replace(good, `"format":1`, `"format":99`, 1),
		"count":        strings.Replace(good, `"records":1`, `"records":2`, 1),
		"no header":    good[strings.Index(good, "\n")+1:],
		"bad record":   strings.Replace(good, `"n":1,`, ``, 1),
		"after end":    good + `{"id":"4:x:2","n":2,"labels":[],"props":{}}` + "\n",
		"empty":        "",
	} {
		if _, err := parseChunk("c", "nodes", []byte(bad), func(any) error { return nil }); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}
