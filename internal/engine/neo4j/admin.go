package neo4j

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// This file builds neo4j-admin command lines and reads neo4j-admin's output. Both are
// pure functions, tested on recorded outputs of each version (testdata/admin).

// Editions.
const (
	EditionCommunity  = "community"
	EditionEnterprise = "enterprise"
)

// AdminTool is a detected neo4j-admin.
type AdminTool struct {
	Path    string // bin/neo4j-admin (or .bat)
	Version string // 5.26.0, 4.4.26, 2025.01.0
	Major   int    // 4, 5, 2025 (calendar versions use the 5.x syntax)
	Edition string // community | enterprise
}

// v4 reports whether the tool speaks the 4.x syntax (neo4j-admin backup, dump, ...).
func (t AdminTool) v4() bool { return t.Major == 4 }

var versionRE = regexp.MustCompile(`(?m)\b(\d{1,4})\.(\d{1,2})(?:\.(\d{1,3}))?\b`)

// parseVersion reads `neo4j-admin --version`: "5.26.0" (5.x), "neo4j-admin 4.4.26"
// (4.x), "2025.01.0" (calendar versions). Only 4.x and newer are supported.
func parseVersion(out string) (version string, major int, err error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return "", 0, fmt.Errorf("no version in neo4j-admin --version output %q", firstLine(out))
	}
	major, _ = strconv.Atoi(m[1])
	if major < 4 {
		return m[0], major, fmt.Errorf("neo4j-admin %s: hartvault drives Neo4j 4.x and newer", m[0])
	}
	return m[0], major, nil
}

// helpCommandRE matches a command line of picocli's help: two spaces, the command
// name (with aliases "help, -h, --help"), two or more spaces, its description.
var helpCommandRE = regexp.MustCompile(`^  ([a-z][a-z0-9-]*)(?:, -[^ ]+)*(?: {2,}|$)`)

// parseCommands lists the commands of a picocli help text (after "Commands:").
func parseCommands(help string) []string {
	var out []string
	in := false
	for _, line := range strings.Split(strings.ReplaceAll(help, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "Commands:") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if line == "" || !strings.HasPrefix(line, " ") {
			if len(out) > 0 {
				break
			}
			continue
		}
		if m := helpCommandRE.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// parseEdition tells the edition from the command list of the help that holds the
// backup commands: `neo4j-admin database --help` on 5.x, `neo4j-admin help` on 4.x.
// Online backup and restore are Enterprise-only, and Community's tool lacks them.
func parseEdition(help string) string {
	has := map[string]bool{}
	for _, c := range parseCommands(help) {
		has[c] = true
	}
	if has["backup"] && has["restore"] {
		return EditionEnterprise
	}
	return EditionCommunity
}

// helpArgs are the arguments whose output parseEdition reads.
func helpArgs(major int) []string {
	if major == 4 {
		return []string{"help"}
	}
	return []string{"database", "--help"}
}

// Backup types of neo4j-admin database backup (5.x).
const (
	adminFull = "FULL"
	adminDiff = "DIFF"
	adminAuto = "AUTO"
)

// backupArgs is the online backup (Enterprise) into dir from address (host:port of
// the server's backup listener). 4.x checks consistency as part of the backup; 5.x
// has no such option, and checkArgs runs the check on the artifacts afterwards.
func backupArgs(t AdminTool, database, from, dir, typ string) []string {
	if t.v4() {
		return []string{"backup", "--from=" + from, "--backup-dir=" + dir, "--database=" + database,
			"--fallback-to-full=true", "--check-consistency=true", "--report-dir=" + dir}
	}
	return []string{"database", "backup", "--from=" + from, "--to-path=" + dir, "--type=" + typ, database}
}

// checkArgs checks the consistency of the backup artifacts in dir (5.x).
func checkArgs(database, dir, reportDir string) []string {
	return []string{"database", "check", "--from-path=" + dir, "--report-path=" + reportDir, database}
}

// inspectArgs lists the backup artifacts in dir with their metadata (5.x).
func inspectArgs(dir string) []string {
	return []string{"database", "backup", "--inspect-path=" + dir}
}

// dumpArgs dumps a stopped database into dir (as <database>.dump).
func dumpArgs(t AdminTool, database, dir string) []string {
	if t.v4() {
		return []string{"dump", "--database=" + database, "--to=" + filepath.Join(dir, database+".dump")}
	}
	return []string{"database", "dump", database, "--to-path=" + dir, "--overwrite-destination=true"}
}

// loadArgs loads dir/<database>.dump over the (stopped) database.
func loadArgs(t AdminTool, database, dir string) []string {
	if t.v4() {
		return []string{"load", "--from=" + filepath.Join(dir, database+".dump"), "--database=" + database, "--force"}
	}
	return []string{"database", "load", database, "--from-path=" + dir, "--overwrite-destination=true"}
}

// restoreArgs restores an online backup (Enterprise). On 5.x from is the last
// artifact of the chain (neo4j-admin finds the rest in its directory) and until, when
// not zero, stops the replay of differential artifacts there (--restore-until, UTC).
// On 4.x from is the backup directory of the database.
func restoreArgs(t AdminTool, database, from string, until time.Time) []string {
	if t.v4() {
		return []string{"restore", "--from=" + from, "--database=" + database, "--force"}
	}
	args := []string{"database", "restore", "--from-path=" + from, "--overwrite-destination=true"}
	if !until.IsZero() {
		args = append(args, "--restore-until="+until.UTC().Format("2006-01-02 15:04:05"))
	}
	return append(args, database)
}

// artifact is one row of `neo4j-admin database backup --inspect-path`.
type artifact struct {
	File       string
	Database   string
	Full       bool
	LowestTx   int64
	HighestTx  int64
	Time       string
	Compressed bool
}

// parseInspect reads the table `neo4j-admin database backup --inspect-path` prints:
//
//	|   FILE | DATABASE | DATABASE ID | TIME | FULL | COMPRESSED | LOWEST TX | HIGHEST TX |
//	| file:///…/neo4j-2023-06-29T14-46-27.backup | neo4j | … | … | true | true | 1 | 11 |
func parseInspect(out string) ([]artifact, error) {
	var cols map[string]int
	var arts []artifact
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cols == nil {
			cols = map[string]int{}
			for i, c := range cells {
				cols[strings.ToUpper(c)] = i
			}
			for _, need := range []string{"FILE", "FULL"} {
				if _, ok := cols[need]; !ok {
					return nil, fmt.Errorf("backup inspection: no %s column in header %q", need, line)
				}
			}
			continue
		}
		get := func(name string) string {
			if i, ok := cols[name]; ok && i < len(cells) {
				return cells[i]
			}
			return ""
		}
		a := artifact{File: get("FILE"), Database: get("DATABASE"), Time: get("TIME"),
			Full: strings.EqualFold(get("FULL"), "true"), Compressed: strings.EqualFold(get("COMPRESSED"), "true")}
		a.LowestTx, _ = strconv.ParseInt(get("LOWEST TX"), 10, 64)
		a.HighestTx, _ = strconv.ParseInt(get("HIGHEST TX"), 10, 64)
		if a.File == "" {
			return nil, fmt.Errorf("backup inspection: a row without a file: %q", line)
		}
		a.File = strings.TrimPrefix(a.File, "file://")
		arts = append(arts, a)
	}
	if cols == nil {
		return nil, fmt.Errorf("backup inspection: no table in the output %q", firstLine(out))
	}
	return arts, nil
}

// logPrefixRE is the timestamp and level neo4j-admin puts before log lines:
// "2026-11-25 22:33:48.416+0000 ERROR [o.n.c.d.DumpCommand] [neo4j/2a4f7d3c] ".
var logPrefixRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{4}|Z)?\s+([A-Z]+)\s+(?:\[[^\]]*\]\s+)*`)

// progressLineRE matches neo4j-admin's progress lines, which are dropped from logs.
var progressLineRE = regexp.MustCompile(`^(?:Files: \d+/\d+, data:\s*[\d.]+%|\.{5,}\s*\d+%|\.+\s*$)`)

// failureSummary picks the line of a failed command's output that says why, best
// first: an ERROR log line (stripped of its timestamp); a line that starts by saying
// something failed ("command failed: ...", "Failed to load ..."); a line mentioning a
// failure, an error, an exception or a missing file; else the last line that is not
// advice to rerun with --verbose.
func failureSummary(out string) string {
	best, bestScore := "", -1
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || progressLineRE.MatchString(l) {
			continue
		}
		score := 0
		if m := logPrefixRE.FindStringSubmatch(l); m != nil {
			if m[1] != "ERROR" {
				continue
			}
			l, score = strings.TrimSpace(l[len(m[0]):]), 3
		} else {
			low := strings.ToLower(l)
			switch {
			case strings.HasPrefix(low, "run with '--verbose'"), strings.HasPrefix(low, "usage:"):
				continue
			case failedLineRE.MatchString(low):
				score = 2
			case strings.Contains(low, "fail"), strings.Contains(low, "error"), strings.Contains(low, "exception"),
				strings.Contains(low, "inconsisten"), strings.Contains(low, "unmatched argument"), strings.Contains(low, "missing required"),
				strings.Contains(low, "is not an existing"), strings.Contains(low, "does not exist"), strings.Contains(low, "not found"),
				strings.Contains(low, "in use"):
				score = 1
			}
		}
		// the first line of the best kind wins; among plain lines, the last
		if score > bestScore || (score == 0 && bestScore == 0) {
			best, bestScore = l, score
		}
	}
	if best == "" {
		return "no output"
	}
	return best
}

// failedLineRE matches lines that open by saying something failed.
var failedLineRE = regexp.MustCompile(`^(?:[a-z-]+ )*(?:command )?failed\b|^error\b|^failed to\b`)

// trimOutput drops progress lines and keeps the output's head and tail, for logs.
func trimOutput(out string, limit int) string {
	var kept []string
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		if t := strings.TrimSpace(l); t == "" || progressLineRE.MatchString(t) {
			continue
		}
		kept = append(kept, l)
	}
	s := strings.Join(kept, "\n")
	if len(s) <= limit {
		return s
	}
	half := limit / 2
	return s[:half] + fmt.Sprintf("\n… (%d bytes left out) …\n", len(s)-2*half) + s[len(s)-half:]
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// commandLine renders a command for logs and errors, quoting what needs it.
func commandLine(name string, args []string) string {
	parts := []string{quoteArg(name)}
	for _, a := range args {
		parts = append(parts, quoteArg(a))
	}
	return strings.Join(parts, " ")
}

func quoteArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\"'\\$`|&;<>()*?[]{}~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// backupAddress is where neo4j-admin backup connects: the Bolt URI's host with the
// backup listener's default port, 6362 (server.backup.listen_address).
func backupAddress(uri string) string {
	rest := uri
	if _, r, ok := strings.Cut(uri, "://"); ok {
		rest = r
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	host := rest
	if strings.HasPrefix(rest, "[") {
		if i := strings.Index(rest, "]"); i >= 0 {
			host = rest[:i+1]
		}
	} else if i := strings.LastIndex(rest, ":"); i >= 0 {
		host = rest[:i]
	}
	if host == "" {
		host = "localhost"
	}
	return host + ":6362"
}
