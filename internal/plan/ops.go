package plan

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule says when each type of backup of a source runs: a cron expression
// ("0 1 * * SUN"), a descriptor (@hourly, @daily, @weekly, @monthly), "on-change"
// (file sets: checked every check_every, backed up when changed) or, for the log,
// "continuous" (PostgreSQL: WAL streamed all the time). Empty: never scheduled.
type Schedule struct {
	Full string `yaml:"full"`
	Diff string `yaml:"diff"`
	Log  string `yaml:"log"`
}

// Schedule words.
const (
	OnChange   = "on-change"
	Continuous = "continuous"
)

// Retention says how long each type of backup is kept: a duration ("4w", "7d"), a
// count ("4 backups"), or "forever". Empty: forever.
type Retention struct {
	Full RetentionRule `yaml:"full"`
	Diff RetentionRule `yaml:"diff"`
	Log  RetentionRule `yaml:"log"`
}

// RetentionRule is one retention setting as written.
type RetentionRule string

// Keep is a parsed retention rule.
type Keep struct {
	Forever bool
	Count   int           // keep the newest Count (when > 0)
	Age     time.Duration // keep those younger than Age (when > 0)
}

var countRE = regexp.MustCompile(`^(\d+)\s+backups?$`)

// Parse reads the rule; an empty rule keeps forever.
func (r RetentionRule) Parse() (Keep, error) {
	s := strings.TrimSpace(string(r))
	if s == "" || s == "forever" {
		return Keep{Forever: true}, nil
	}
	if m := countRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		if n < 1 {
			return Keep{}, fmt.Errorf("keeps at least 1 backup")
		}
		return Keep{Count: n}, nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return Keep{}, fmt.Errorf("%q: want a duration (4w, 7d), a count (\"4 backups\") or forever", s)
	}
	return Keep{Age: d}, nil
}

// Alerts raise an alert when the newest backup of a type is older than this.
type Alerts struct {
	Full Duration `yaml:"full"`
	Diff Duration `yaml:"diff"`
	Log  Duration `yaml:"log"`
}

// Agent configures the long-running agent.
type Agent struct {
	Listen string `yaml:"listen"` // host:port of the HTTP server (default 127.0.0.1:9187)
	Notify Notify `yaml:"notify"`
	// Prune: false keeps the agent from deleting anything (it may then run with
	// credentials that cannot delete); default true.
	Prune *bool `yaml:"prune"`
}

// Notify says where alerts and failures are sent.
type Notify struct {
	Webhook string `yaml:"webhook"` // JSON POST on failures and on each alert raised or cleared
}

// DefaultListen is the agent's default HTTP address.
const DefaultListen = "127.0.0.1:9187"

// DefaultCheckEvery is how often on-change sources are checked by default.
const DefaultCheckEvery = Duration(time.Minute)

// ParseSchedule checks one schedule entry and returns a cron schedule for it (nil
// for on-change and continuous).
func ParseSchedule(expr string) (cron.Schedule, error) {
	switch expr {
	case OnChange, Continuous:
		return nil, nil
	}
	return cron.ParseStandard(expr)
}

func (v *validator) ops(p *Plan) *Error {
	for key, tier := range p.Repository.Tiers {
		f := "repository.tiers." + key
		switch key {
		case "full", "diff", "log", KindFiles, KindPostgres, KindMSSQL, KindNeo4j:
		default:
			return v.errf(f, "unknown key %q (want full, diff, log or a source kind)", key)
		}
		switch tier {
		case "hot", "cool", "cold", "archive":
		default:
			return v.errf(f, "unknown tier %q (want hot, cool, cold or archive)", tier)
		}
		if key == "log" && tier == "archive" {
			return v.errf(f, "the log is read during every restore and cannot wait hours for rehydration: use hot, cool or cold")
		}
	}
	if p.Repository.Immutable < 0 {
		return v.errf("repository.immutable", "must be positive")
	}
	if err := v.recovery(p); err != nil {
		return err
	}
	p.Location = time.Local
	if p.Timezone != "" {
		loc, err := time.LoadLocation(p.Timezone)
		if err != nil {
			return v.errf("timezone", "unknown time zone %q", p.Timezone)
		}
		p.Location = loc
	}
	if p.Agent.Listen == "" {
		p.Agent.Listen = DefaultListen
	} else if _, _, err := net.SplitHostPort(p.Agent.Listen); err != nil {
		return v.errf("agent.listen", "%q: want host:port", p.Agent.Listen)
	}
	if w := p.Agent.Notify.Webhook; w != "" {
		u, err := url.Parse(w)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return v.errf("agent.notify.webhook", "want an http:// or https:// URL")
		}
	}
	for i := range p.Sources {
		s := &p.Sources[i]
		f := fmt.Sprintf("sources[%d]", i)
		for _, e := range []struct {
			name, expr string
		}{{"full", s.Schedule.Full}, {"diff", s.Schedule.Diff}, {"log", s.Schedule.Log}} {
			if e.expr == "" {
				continue
			}
			field := f + ".schedule." + e.name
			switch {
			case e.expr == OnChange && (e.name != "full" || s.Kind != KindFiles):
				return v.errf(field, "on-change is for the full backups of a files source")
			case e.expr == Continuous && (e.name != "log" || s.Kind != KindPostgres):
				return v.errf(field, "continuous is for the log of a postgres source (WAL streaming)")
			}
			if _, err := ParseSchedule(e.expr); err != nil {
				return v.errf(field, "%q: not a cron expression (minute hour day month weekday), @hourly/@daily/@weekly/@monthly, on-change or continuous: %v", e.expr, err)
			}
		}
		if s.CheckEvery == 0 {
			s.CheckEvery = DefaultCheckEvery
		}
		for _, r := range []struct {
			name string
			rule RetentionRule
		}{{"full", s.Retention.Full}, {"diff", s.Retention.Diff}, {"log", s.Retention.Log}} {
			if _, err := r.rule.Parse(); err != nil {
				return v.errf(f+".retention."+r.name, "%v", err)
			}
		}
	}
	return nil
}

// ScheduleFor returns the source's schedule of a backup type ("" when none).
func (s Source) ScheduleFor(typ string) string {
	switch typ {
	case "full":
		return s.Schedule.Full
	case "diff":
		return s.Schedule.Diff
	case "log":
		return s.Schedule.Log
	}
	return ""
}

// AlertAfter returns the age past which the newest backup of a type raises an
// alert (0: no threshold).
func (s Source) AlertAfter(typ string) time.Duration {
	switch typ {
	case "full":
		return s.Alerts.Full.Std()
	case "diff":
		return s.Alerts.Diff.Std()
	case "log":
		return s.Alerts.Log.Std()
	}
	return 0
}
