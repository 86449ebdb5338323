package agent

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/status"
)

// RuleFile is a Prometheus rule file.
type RuleFile struct {
	Groups []RuleGroup `yaml:"groups"`
}

// RuleGroup is a group of rules.
type RuleGroup struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// Rule is one alerting rule.
type Rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Alert rule names.
const (
	RuleStale   = "HartvaultBackupStale"
	RuleMissing = "HartvaultBackupMissing"
	RuleFailed  = "HartvaultBackupFailed"
	RuleSlow    = "HartvaultBackupSlow"

	RuleDrillFailed  = "HartvaultDrillFailed"
	RuleDrillOverdue = "HartvaultDrillOverdue"
)

// Rules makes Prometheus alerting rules equivalent to the plan's thresholds, on
// the metrics the agent exports:
//
//   - stale: for each alerts threshold, time() minus the last success over it (and
//     the last success absent: no backup yet, or no agent reporting);
//   - failed: for each scheduled type, the last completed attempt failed;
//   - slow: for each scheduled type, a backup running longer than max_duration
//     (default three times the 7-day average), or the last one having taken longer
//     than max_duration when the plan sets one.
//
// status applies the same thresholds (hartvault status --check); one difference:
// a finished backup judged against the default is compared there with the average
// of the backups before it, which Prometheus does not have.
func Rules(p *plan.Plan) RuleFile {
	g := RuleGroup{Name: "hartvault"}
	for _, src := range p.Sources {
		for _, typ := range typeOrder {
			sel := fmt.Sprintf("{source=%s,type=%s}", strconv.Quote(src.Name), strconv.Quote(typ))
			labels := func(severity string) map[string]string {
				return map[string]string{"severity": severity, "source": src.Name, "type": typ}
			}
			if th := src.AlertAfter(typ); th > 0 {
				g.Rules = append(g.Rules, Rule{
					Alert:  RuleStale,
					Expr:   fmt.Sprintf("time() - %s%s > %d", MetricLastSuccess, sel, int64(th.Seconds())),
					Labels: labels("critical"),
					Annotations: map[string]string{
						"summary": fmt.Sprintf("The newest %s backup of %s is older than %s", typ, src.Name, status.FormatDuration(th)),
						"description": fmt.Sprintf("The newest %s backup of %s is {{ $value | humanizeDuration }} old; the plan's alert threshold is %s.",
							typ, src.Name, status.FormatDuration(th)),
					},
				}, Rule{
					Alert: RuleMissing,
					Expr:  fmt.Sprintf("absent(%s%s)", MetricLastSuccess, sel),
					// as long as the threshold: a new source gets that long for its first backup
					For:    promDuration(th),
					Labels: labels("critical"),
					Annotations: map[string]string{
						"summary": fmt.Sprintf("No %s backup of %s is known", typ, src.Name),
						"description": fmt.Sprintf("No agent has reported a %s backup of %s for %s: none was taken, or the agent is not running.",
							typ, src.Name, status.FormatDuration(th)),
					},
				})
			}
			expr := src.ScheduleFor(typ)
			if expr == "" || expr == plan.Continuous {
				continue
			}
			g.Rules = append(g.Rules, Rule{
				Alert:  RuleFailed,
				Expr:   fmt.Sprintf("%s%s == 1", MetricLastFailed, sel),
				Labels: labels("warning"),
				Annotations: map[string]string{
					"summary":     fmt.Sprintf("The last %s backup of %s failed", typ, src.Name),
					"description": fmt.Sprintf("The last attempt at a %s backup of %s failed; the agent retries with backoff. See hartvault status.", typ, src.Name),
				},
			})
			if max := src.MaxDuration.Std(); max > 0 {
				secs := int64(max.Seconds())
				g.Rules = append(g.Rules, Rule{
					Alert:  RuleSlow,
					Expr:   fmt.Sprintf("%s%s > %d or %s%s > %d", MetricRunning, sel, secs, MetricLastDuration, sel, secs),
					Labels: labels("warning"),
					Annotations: map[string]string{
						"summary":     fmt.Sprintf("A %s backup of %s runs or ran longer than max_duration %s", typ, src.Name, status.FormatDuration(max)),
						"description": fmt.Sprintf("A %s backup of %s has taken {{ $value | humanizeDuration }} (max_duration %s).", typ, src.Name, status.FormatDuration(max)),
					},
				})
			} else {
				g.Rules = append(g.Rules, Rule{
					Alert:  RuleSlow,
					Expr:   fmt.Sprintf("%s%s > %d * %s%s", MetricRunning, sel, status.DefaultSlowFactor, MetricAvgDuration, sel),
					Labels: labels("warning"),
					Annotations: map[string]string{
						"summary": fmt.Sprintf("A %s backup of %s runs longer than %d times its 7-day average", typ, src.Name, status.DefaultSlowFactor),
						"description": fmt.Sprintf("A %s backup of %s has been running for {{ $value | humanizeDuration }}, over %d times its 7-day average.",
							typ, src.Name, status.DefaultSlowFactor),
					},
				})
			}
		}
	}
	if every := p.Drills.Every.Std(); every > 0 {
		g.Rules = append(g.Rules, Rule{
			Alert:  RuleDrillFailed,
			Expr:   MetricDrillPassed + " == 0",
			Labels: map[string]string{"severity": "critical"},
			Annotations: map[string]string{
				"summary":     "The last restore drill failed",
				"description": "The last restore drill did not restore every source or a check did not hold. See hartvault status.",
			},
		}, Rule{
			Alert:  RuleDrillOverdue,
			Expr:   fmt.Sprintf("time() - %s > %d or absent(%s)", MetricDrillTime, int64(every.Seconds()), MetricDrillTime),
			For:    "1h",
			Labels: map[string]string{"severity": "warning"},
			Annotations: map[string]string{
				"summary":     fmt.Sprintf("No restore drill in the last %s", status.FormatDuration(every)),
				"description": fmt.Sprintf("drills.every is %s; the agent runs drills when they are due.", status.FormatDuration(every)),
			},
		})
	}
	return RuleFile{Groups: []RuleGroup{g}}
}

// YAML renders the rule file, every string single-quoted (PromQL's double quotes
// stay readable).
func (f RuleFile) YAML() ([]byte, error) {
	var b strings.Builder
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	b.WriteString("groups:\n")
	for _, g := range f.Groups {
		fmt.Fprintf(&b, "  - name: %s\n    rules:\n", q(g.Name))
		for _, r := range g.Rules {
			if strings.ContainsAny(r.Expr+r.Alert, "\n\r") {
				return nil, fmt.Errorf("render alerting rules: %s: a line break in the rule", r.Alert)
			}
			fmt.Fprintf(&b, "      - alert: %s\n        expr: %s\n", r.Alert, q(r.Expr))
			if r.For != "" {
				fmt.Fprintf(&b, "        for: %s\n", r.For)
			}
			for _, m := range []struct {
				name string
				kv   map[string]string
			}{{"labels", r.Labels}, {"annotations", r.Annotations}} {
				if len(m.kv) == 0 {
					continue
				}
				fmt.Fprintf(&b, "        %s:\n", m.name)
				for _, k := range slices.Sorted(maps.Keys(m.kv)) {
					fmt.Fprintf(&b, "          %s: %s\n", k, q(m.kv[k]))
				}
			}
		}
	}
	return []byte(b.String()), nil
}

// promDuration writes d as a Prometheus duration (whole seconds).
func promDuration(d time.Duration) string { return strconv.FormatInt(int64(d.Seconds()), 10) + "s" }
