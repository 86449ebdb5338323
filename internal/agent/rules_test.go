package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/plan"
)

func seedOpsPlan() *plan.Plan {
	return &plan.Plan{Location: time.UTC, Sources: []plan.Source{
		{Name: "hartonomous", Kind: plan.KindPostgres,
			Schedule: plan.Schedule{Full: "0 1 * * SUN", Diff: "0 2 * * *", Log: plan.Continuous},
			Alerts:   plan.Alerts{Full: dur(8 * 24 * time.Hour), Diff: dur(26 * time.Hour), Log: dur(2 * time.Hour)}},
		{Name: "graph", Kind: "neo4j", Schedule: plan.Schedule{Full: "0 3 * * *"}, MaxDuration: dur(2 * time.Hour)},
		{Name: "assemblies", Kind: plan.KindFiles, Schedule: plan.Schedule{Full: plan.OnChange}},
	}}
}

// TestRules: the rules for the seed's plan pass promtool check rules, and
// promtool's rule unit tests show them firing where status would.
func TestRules(t *testing.T) {
	rules, err := Rules(seedOpsPlan()).YAML()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "hartvault-rules.yml")
	os.WriteFile(file, rules, 0o644)
	for _, want := range []string{
		`time() - hartvault_last_success_timestamp_seconds{source="hartonomous",type="full"} > 691200`,
		`time() - hartvault_last_success_timestamp_seconds{source="hartonomous",type="diff"} > 93600`,
		`time() - hartvault_last_success_timestamp_seconds{source="hartonomous",type="log"} > 7200`,
		`hartvault_last_attempt_failed{source="assemblies",type="full"} == 1`,
		`hartvault_backup_running_seconds{source="graph",type="full"} > 7200 or hartvault_last_backup_duration_seconds{source="graph",type="full"} > 7200`,
		`hartvault_backup_running_seconds{source="hartonomous",type="diff"} > 3 * hartvault_backup_average_duration_seconds{source="hartonomous",type="diff"}`,
	} {
		if !strings.Contains(string(rules), want) {
			t.Errorf("rules lack %s", want)
		}
	}
	if strings.Contains(string(rules), `type="log"} == 1`) {
		t.Error("a failed rule for the continuous log, which has no attempts")
	}
	bin := Promtool(t)
	if out, err := exec.Command(bin, "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, rules)
	}

	// Rule unit tests: promtool evaluates the rules over synthetic series.
	tests := `rule_files: [hartvault-rules.yml]
evaluation_interval: 30m
tests:
  - interval: 1h
    input_series:
      # the full finished at time 0 and never again; the diff keeps up; no log reported
      - series: 'hartvault_last_success_timestamp_seconds{source="hartonomous",type="full"}'
        values: '0x300'
      - series: 'hartvault_last_success_timestamp_seconds{source="hartonomous",type="diff"}'
        values: '0+3600x300'
      - series: 'hartvault_last_attempt_failed{source="assemblies",type="full"}'
        values: '0 0 1 1 0'
      - series: 'hartvault_backup_running_seconds{source="hartonomous",type="diff"}'
        values: '600 3600'
      - series: 'hartvault_backup_average_duration_seconds{source="hartonomous",type="diff"}'
        values: '600 600'
    alert_rule_test:
      - eval_time: 7d
        alertname: HartvaultBackupStale
        exp_alerts: []
      - eval_time: 8d1h
        alertname: HartvaultBackupStale
        exp_alerts:
          - exp_labels: {severity: critical, source: hartonomous, type: full}
            exp_annotations:
              summary: The newest full backup of hartonomous is older than 8d
              description: The newest full backup of hartonomous is 8d 1h 0m 0s old; the plan's alert threshold is 8d.
      - eval_time: 1h
        alertname: HartvaultBackupMissing
        exp_alerts: []
      - eval_time: 3h
        alertname: HartvaultBackupMissing
        exp_alerts:
          - exp_labels: {severity: critical, source: hartonomous, type: log}
            exp_annotations:
              summary: No log backup of hartonomous is known
              description: "No agent has reported a log backup of hartonomous for 2h: none was taken, or the agent is not running."
      - eval_time: 2h
        alertname: HartvaultBackupFailed
        exp_alerts:
          - exp_labels: {severity: warning, source: assemblies, type: full}
            exp_annotations:
              summary: The last full backup of assemblies failed
              description: The last attempt at a full backup of assemblies failed; the agent retries with backoff. See hartvault status.
      - eval_time: 4h
        alertname: HartvaultBackupFailed
        exp_alerts: []
      - eval_time: 0m
        alertname: HartvaultBackupSlow
        exp_alerts: []
      - eval_time: 1h
        alertname: HartvaultBackupSlow
        exp_alerts:
          - exp_labels: {severity: warning, source: hartonomous, type: diff}
            exp_annotations:
              summary: A diff backup of hartonomous runs longer than 3 times its 7-day average
              description: A diff backup of hartonomous has been running for 1h 0m 0s, over 3 times its 7-day average.
`
	tf := filepath.Join(dir, "tests.yml")
	os.WriteFile(tf, []byte(tests), 0o644)
	if out, err := exec.Command(bin, "test", "rules", tf).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s\nrules:\n%s", err, out, rules)
	}
}
