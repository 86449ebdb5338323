package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/storage"
)

// DrillRecord is the outcome of one restore drill, kept in the repository.
type DrillRecord struct {
	ID       string        `json:"id"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Host     string        `json:"host"`
	To       time.Time     `json:"to"`   // the instant restored to
	Took     time.Duration `json:"took"` // the measured recovery time (restores, not checks)
	Passed   bool          `json:"passed"`
	Sources  []DrillSource `json:"sources"`
	Checks   []DrillCheck  `json:"checks"`
	Error    string        `json:"error,omitempty"`
}

// DrillSource is one source's part of a drill.
type DrillSource struct {
	Source  string        `json:"source"`
	Backups []string      `json:"backups"`
	Bytes   int64         `json:"bytes"`
	Took    time.Duration `json:"took"`
	Error   string        `json:"error,omitempty"`
}

// DrillCheck is one check's outcome.
type DrillCheck struct {
	Source string `json:"source"`
	Query  string `json:"query"`
	Passed bool   `json:"passed"`
	Error  string `json:"error,omitempty"`
}

func drillKey(id string) string { return "drills/" + id + ".json" }

// RecordDrill stores a drill's outcome. Records hold no secret and are not
// encrypted: status reads them without the key.
func (r *Repo) RecordDrill(ctx context.Context, d *DrillRecord) error {
	if d.ID == "" {
		d.ID = d.Started.UTC().Format("20060102T150405Z") + "-" + randomHex(2)
	}
	if d.Host == "" {
		d.Host = r.host
	}
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := r.store.Put(ctx, drillKey(d.ID), data, storage.PutOptions{}); err != nil {
		return fmt.Errorf("record drill: %w", err)
	}
	return nil
}

// Drills returns the recorded drills, oldest first.
func (r *Repo) Drills(ctx context.Context) ([]*DrillRecord, error) {
	var keys []string
	if err := r.store.List(ctx, "drills/", func(o storage.ObjectInfo) error {
		if strings.HasSuffix(o.Key, ".json") {
			keys = append(keys, o.Key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list drills: %w", err)
	}
	var out []*DrillRecord
	for _, k := range keys {
		raw, err := r.store.ReadAll(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		var d DrillRecord
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("%s is damaged: %w", k, err)
		}
		out = append(out, &d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}
