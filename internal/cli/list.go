package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/repo"
)

// backupJSON is the stable JSON form of a backup in list output.
type backupJSON struct {
	ID          string          `json:"id"`
	Source      string          `json:"source"`
	Kind        string          `json:"kind"`
	Type        string          `json:"type"`
	Tag         string          `json:"tag,omitempty"`
	Started     time.Time       `json:"started"`
	Finished    time.Time       `json:"finished"`
	Bytes       int64           `json:"bytes"`
	StoredBytes int64           `json:"stored_bytes"`
	Parent      *string         `json:"parent"`
	Objects     int             `json:"objects"`
	Files       int             `json:"files"`
	Host        string          `json:"host"`
	Engine      json.RawMessage `json:"engine,omitempty"`
}

func toJSON(m *repo.Manifest) backupJSON {
	b := backupJSON{ID: m.ID, Source: m.Source, Kind: m.Kind, Type: m.Type, Tag: m.Tag,
		Started: m.Started, Finished: m.Finished, Bytes: m.Bytes, StoredBytes: m.StoredBytes,
		Objects: len(m.Objects), Files: len(m.Files), Host: m.Host, Engine: m.Engine}
	if m.Parent != "" {
		p := m.Parent
		b.Parent = &p
	}
	return b
}

func (a *app) listCommand() *cobra.Command {
	var asJSON bool
	var replica string
	cmd := &cobra.Command{
		Use:   "list [SOURCE]",
		Short: "List committed backups, oldest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, r, err := a.openForReading(ctx, replica)
			if err != nil {
				return err
			}
			defer r.Close()
			source := ""
			if len(args) == 1 {
				source = args[0]
				if p.Source(source) == nil {
					if _, err := engineFor(p, source); err != nil {
						return err
					}
				}
			}
			backups, err := r.Backups(ctx, source)
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]backupJSON, 0, len(backups))
				for _, m := range backups {
					out = append(out, toJSON(m))
				}
				enc := json.NewEncoder(a.env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if len(backups) == 0 {
				fmt.Fprintln(a.env.Stdout, "no backups")
				return nil
			}
			tw := tabwriter.NewWriter(a.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSOURCE\tTYPE\tTAG\tFINISHED\tDURATION\tREAD\tSTORED\tPARENT")
			for _, m := range backups {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Source, m.Type, dash(m.Tag),
					localTime(m.Finished), roundDuration(m.Finished.Sub(m.Started)), bytesIEC(m.Bytes),
					bytesIEC(m.StoredBytes), dash(m.Parent))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			// Engine details (LSNs, timelines, WAL ranges) each on a line of their own.
			for _, m := range backups {
				if p.Source(m.Source) == nil {
					continue
				}
				if eng, err := engineFor(p, m.Source); err == nil {
					if s, ok := eng.(engine.Summarizer); ok {
						fmt.Fprintf(a.env.Stdout, "%s: %s\n", m.ID, s.Summary(m))
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&replica, "replica", "", "list this replica (URL, number or name) instead of the primary")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
