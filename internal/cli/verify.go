package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

type verifyJSON struct {
	Backup  string          `json:"backup"`
	Source  string          `json:"source"`
	Objects int             `json:"objects"`
	Bytes   int64           `json:"stored_bytes"`
	OK      bool            `json:"ok"`
	Damaged []damagedObject `json:"damaged"`
	// Notes are what a restore of the backup works around: not damage.
	Notes []string `json:"notes,omitempty"`
}

type damagedObject struct {
	Object string `json:"object,omitempty"`
	Where  string `json:"where,omitempty"` // inside the content: a relation file and block
	Reason string `json:"reason"`
}

func (a *app) verifyCommand() *cobra.Command {
	var backupID, replica string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify [SOURCE]",
		Short: "Read back every object and check it against its manifest",
		Long: `Reads back every object of the chosen backups (all by default) and checks size and
SHA-256 against the manifest. Exits 0 only when all are intact; otherwise 1, naming each
damaged backup and object.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var p *plan.Plan
			var r *repo.Repo
			var err error
			if replica != "" {
				p, r, err = a.openForReading(ctx, replica)
			} else {
				p, r, err = a.openRepo(ctx)
			}
			if err != nil {
				return err
			}
			defer r.Close()
			source := ""
			if len(args) == 1 {
				source = args[0]
				if _, err := engineFor(p, source); err != nil {
					return err
				}
			}
			backups, err := r.Backups(ctx, source)
			if err != nil {
				return err
			}
			if backupID != "" {
				if source == "" {
					return usagef("--backup needs a SOURCE")
				}
				m, err := repo.Find(backups, backupID)
				if err != nil {
					return err
				}
				backups = []*repo.Manifest{m}
			}
			var results []verifyJSON
			bad := 0
			for _, m := range backups {
				res := verifyJSON{Backup: m.ID, Source: m.Source, Objects: len(m.Objects), Bytes: m.StoredBytes, OK: true, Damaged: []damagedObject{}}
				err := r.VerifyObjects(ctx, nil, m, func(o repo.ObjectResult) {
					if o.Err != nil {
						res.OK = false
						res.Damaged = append(res.Damaged, damagedObject{Object: o.Object.Key, Reason: o.Err.(*repo.DamageError).Reason})
					}
				})
				if err != nil {
					return err
				}
				if err := a.verifyContent(cmd, p, r, m, &res); err != nil {
					return err
				}
				if eng, err := engineFor(p, m.Source); err == nil {
					if wr, ok := eng.(engine.Warner); ok {
						res.Notes = wr.Warnings(m)
					}
				}
				sort.SliceStable(res.Damaged, func(i, j int) bool { return res.Damaged[i].Object < res.Damaged[j].Object })
				if !res.OK {
					bad++
				}
				results = append(results, res)
				if !asJSON {
					if res.OK {
						fmt.Fprintf(a.env.Stdout, "ok       %s %s (%d objects, %s)\n", m.Source, m.ID, len(m.Objects), bytesIEC(m.StoredBytes))
					}
					for _, n := range res.Notes {
						fmt.Fprintf(a.env.Stdout, "note     %s %s: %s\n", m.Source, m.ID, n)
					}
					for _, d := range res.Damaged {
						if d.Where != "" {
							fmt.Fprintf(a.env.Stdout, "DAMAGED  %s %s: %s: %s\n", m.Source, m.ID, d.Where, d.Reason)
							continue
						}
						fmt.Fprintf(a.env.Stdout, "DAMAGED  %s %s: object %s: %s\n", m.Source, m.ID, d.Object, d.Reason)
					}
				}
			}
			// The continuous log (WAL) of each source in scope.
			logProblems := 0
			if backupID == "" {
				for _, src := range p.Sources {
					if source != "" && src.Name != source {
						continue
					}
					eng, err := engineFor(p, src.Name)
					if err != nil {
						continue
					}
					lv, ok := eng.(engine.LogVerifier)
					if !ok {
						continue
					}
					res := verifyJSON{Source: src.Name, Backup: "log", OK: true, Damaged: []damagedObject{}}
					n, err := lv.VerifyLogs(ctx, r, func(pr engine.Problem) {
						res.OK = false
						res.Damaged = append(res.Damaged, damagedObject{Object: pr.Where, Reason: pr.Reason})
					})
					if err != nil {
						return err
					}
					res.Objects = n
					if !res.OK {
						logProblems++
					}
					results = append(results, res)
					if !asJSON {
						if res.OK {
							fmt.Fprintf(a.env.Stdout, "ok       %s log archive (%d files)\n", src.Name, n)
						}
						for _, d := range res.Damaged {
							fmt.Fprintf(a.env.Stdout, "DAMAGED  %s log archive: %s: %s\n", src.Name, d.Object, d.Reason)
						}
					}
				}
			}
			if asJSON {
				if results == nil {
					results = []verifyJSON{}
				}
				enc := json.NewEncoder(a.env.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(results); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.env.Stdout, "%d backups verified, %d damaged\n", len(backups), bad)
			}
			if bad > 0 {
				return exitError{code: ExitFailed, msg: fmt.Sprintf("%d of %d backups are damaged", bad, len(backups))}
			}
			if logProblems > 0 {
				return exitError{code: ExitFailed, msg: "the log archive is damaged"}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&backupID, "backup", "", "verify only this backup (id or tag)")
	cmd.Flags().StringVar(&replica, "replica", "", "verify this replica (URL, number or name) instead of the primary")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// verifyContent runs the engine's own checks of a backup's content (page checksums)
// when the source is still in the plan and its engine has them.
func (a *app) verifyContent(cmd *cobra.Command, p *plan.Plan, r *repo.Repo, m *repo.Manifest, res *verifyJSON) error {
	if p.Source(m.Source) == nil {
		return nil
	}
	eng, err := engineFor(p, m.Source)
	if err != nil {
		return nil
	}
	cv, ok := eng.(engine.ContentVerifier)
	if !ok {
		return nil
	}
	err = cv.VerifyContent(cmd.Context(), r, m, func(pr engine.Problem) {
		res.OK = false
		res.Damaged = append(res.Damaged, damagedObject{Where: pr.Where, Reason: pr.Reason})
	})
	var d *repo.DamageError
	if errors.As(err, &d) {
		res.OK = false
		for _, x := range res.Damaged {
			if x.Object == d.Object {
				return nil // already reported by the object check
			}
		}
		res.Damaged = append(res.Damaged, damagedObject{Object: d.Object, Reason: d.Reason})
		return nil
	}
	return err
}
