package retention

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
)

// Write prints a result for people: the policy and the window it keeps, every
// backup with what happens to it and why, every log range deleted and why, and a
// summary line.
func (res Result) Write(w io.Writer) error {
	d := res.Decision
	verb, did := "delete", "deleted"
	if res.DryRun {
		verb, did = "would delete", "would delete"
	}
	window := "no time window (counts keep backups, not a span of time)"
	switch pol := d.Policy; {
	case pol.Full.Forever || pol.Diff.Forever || pol.Log.Forever:
		window = "every instant since the first full stays restorable"
	case d.Window() > 0:
		window = fmt.Sprintf("every instant from %s on stays restorable", stamp(d.Now.Add(-d.Window())))
	}
	fmt.Fprintf(w, "%s: retention %s, as of %s: %s\n", res.Source, d.Policy, stamp(d.Now), window)
	for _, id := range res.Leftovers {
		fmt.Fprintf(w, "  removed the data of interrupted backup %s\n", id)
	}
	removed := map[string]Removed{}
	for _, rm := range res.Deleted {
		removed[rm.Backup.ID] = rm
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, v := range d.Backups {
		m := v.Backup
		action, detail := "keep", ""
		if !v.Keep {
			action = verb
			if rm, ok := removed[m.ID]; ok {
				detail = fmt.Sprintf("%d objects, %s: ", rm.Objects, engine.Bytes(rm.Bytes))
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\tfinished %s\t%s%s\n", action, m.ID, m.Type, stamp(m.Finished), detail, v.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	logObjects := 0
	for _, l := range res.Logs {
		logObjects += len(l.Objects)
		fmt.Fprintf(w, "  %s %s (%d objects, %s): %s\n", verb, l.What, len(l.Objects), engine.Bytes(l.Bytes), l.Reason)
	}
	backups, objects, bytes := res.Totals()
	freed := "freed"
	if res.DryRun {
		freed = "to free; dry run: nothing was deleted"
	}
	_, err := fmt.Fprintf(w, "%s: %s %d of %d backups and %d log objects: %d objects, %s %s\n",
		res.Source, did, backups, len(d.Backups), logObjects, objects, engine.Bytes(bytes), freed)
	return err
}

// stamp prints an instant in UTC to the minute, or to the second when it has seconds.
func stamp(t time.Time) string {
	t = t.UTC()
	if t.Second() != 0 || t.Nanosecond() != 0 {
		return t.Format("2006-01-02 15:04:05 MST")
	}
	return t.Format("2006-01-02 15:04 MST")
}
