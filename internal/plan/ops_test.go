package plan

import (
	"strings"
	"testing"
	"time"
)

func TestOperationsFields(t *testing.T) {
	y := `repository:
  url: file:///r
  encryption: none
timezone: Europe/London
agent:
  listen: 127.0.0.1:9999
  notify: { webhook: https://hooks.example/backups }
sources:
  - name: hartonomous
    kind: postgres
    data_dir: /d
    conninfo: host=x
    schedule: { full: "0 1 * * SUN", diff: "0 2 * * *", log: continuous }
    retention: { full: 4w, diff: 7d, log: 7d }
    alerts: { full: 8d, diff: 26h, log: 2h }
  - name: assemblies
    kind: files
    paths: [/a]
    schedule: { full: on-change }
    retention: { full: forever }
`
	p, err := Parse("hartvault.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if p.Location.String() != "Europe/London" || p.Agent.Listen != "127.0.0.1:9999" || p.Agent.Notify.Webhook == "" {
		t.Fatalf("plan: %+v", p)
	}
	pg := p.Source("hartonomous")
	if pg.Schedule.Full != "0 1 * * SUN" || pg.Alerts.Diff.Std() != 26*time.Hour || pg.CheckEvery.Std() != time.Minute {
		t.Fatalf("source: %+v", pg)
	}
	k, _ := pg.Retention.Full.Parse()
	if k.Age != 28*24*time.Hour {
		t.Fatalf("retention full: %+v", k)
	}
	k, _ = p.Source("assemblies").Retention.Full.Parse()
	if !k.Forever {
		t.Fatalf("forever: %+v", k)
	}
	if k, _ := RetentionRule("4 backups").Parse(); k.Count != 4 {
		t.Fatalf("count: %+v", k)
	}
	if k, _ := RetentionRule("").Parse(); !k.Forever {
		t.Fatal("empty rule should keep forever")
	}
}

func TestOperationsErrors(t *testing.T) {
	head := "repository:\n  url: file:///r\n  encryption: none\nsources:\n  - name: a\n    kind: files\n    paths: [/a]\n"
	for _, c := range []struct{ body, want string }{
		{"    schedule: { full: \"61 * * * *\" }\n", "hartvault.yaml:8: sources[0].schedule.full: \"61 * * * *\": not a cron expression"},
		{"    schedule: { log: continuous }\n", "sources[0].schedule.log: continuous is for the log of a postgres source"},
		{"    schedule: { diff: on-change }\n", "sources[0].schedule.diff: on-change is for the full backups of a files source"},
		{"    retention: { full: 4 weeks }\n", "sources[0].retention.full: \"4 weeks\": want a duration"},
		{"    alerts: { full: soon }\n", "sources[0].alerts.full"},
		{"    schedule: { fulll: \"@daily\" }\n", "sources[0].schedule.fulll: unknown field"},
	} {
		_, err := Parse("hartvault.yaml", []byte(head+c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.body, err, c.want)
		}
	}
	for _, c := range []struct{ body, want string }{
		{"timezone: Mars/Olympus\n", "hartvault.yaml:1: timezone: unknown time zone"},
		{"agent:\n  listen: nowhere\n", "agent.listen: \"nowhere\": want host:port"},
		{"agent:\n  notify: { webhook: ftp://x }\n", "agent.notify.webhook: want an http:// or https:// URL"},
	} {
		_, err := Parse("hartvault.yaml", []byte(c.body+head))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.body, err, c.want)
		}
	}
}
