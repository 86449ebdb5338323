// Package cli is hartvault's command line: one file per command, each parsing flags,
// calling the packages that do the work, and printing. Errors are one line on
// stderr; exit codes are 0 success, 1 failure or damage, 2 usage or plan-file error.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hartonomous/hartvault/internal/plan"
)

// Version of this build.
const Version = "0.1.0-dev"

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

// Env is what a command run sees of the outside world; tests substitute it.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	Now    func() time.Time
	// IsTerminal reports whether stderr is a terminal (progress bars only then).
	IsTerminal bool
}

// app carries the global flags and the environment through a run.
type app struct {
	env        Env
	configPath string
	logLevel   string
	quiet      bool
	log        *slog.Logger
}

// usageError is a command-line mistake (exit 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitError carries an exit code with an already-printed outcome (verify's damage).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// Main runs hartvault with args and returns the exit code.
func Main(ctx context.Context, args []string, env Env) int {
	a := &app{env: env}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := ExitFailed
	var pe *plan.Error
	var ue usageError
	var ee exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case errors.As(err, &pe), errors.As(err, &ue), isCobraUsage(err):
		code = ExitUsage
	}
	msg := oneLine(err.Error())
	if msg != "" {
		fmt.Fprintf(env.Stderr, "hartvault: %s\n", msg)
	}
	return code
}

// isCobraUsage recognises cobra's own argument and flag errors, which it returns
// as plain errors.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "requires at most", "required flag", "if any flags in the group"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "hartvault",
		Short: "Backup and recovery for databases and file sets",
		Long: `hartvault backs up PostgreSQL, SQL Server, Neo4j and file sets into one encrypted,
checksummed repository on local disk or object storage, and restores them to a point in time.

The plan file (--config, else $HARTVAULT_CONFIG, else ./hartvault.yaml) says where the
repository is and what to back up.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setupLogging()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "plan file (default $HARTVAULT_CONFIG, then ./hartvault.yaml)")
	pf.StringVar(&a.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "no progress bar")
	root.AddCommand(
		a.versionCommand(),
		a.initCommand(),
		a.backupCommand(),
		a.listCommand(),
		a.verifyCommand(),
		a.restoreCommand(),
		a.walPushCommand(),
		a.walFetchCommand(),
		a.walStreamCommand(),
		a.recoverCommand(),
		a.drillCommand(),
		a.pruneCommand(),
		a.replicateCommand(),
		a.statusCommand(),
		a.alertsCommand(),
		a.agentCommand(),
	)
	return root
}

func (a *app) setupLogging() error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(a.logLevel)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", a.logLevel)
	}
	a.log = slog.New(slog.NewTextHandler(a.env.Stderr, &slog.HandlerOptions{
		Level: lvl,
		ReplaceAttr: func(groups []string, at slog.Attr) slog.Attr {
			if len(groups) == 0 && at.Key == slog.TimeKey {
				return slog.Attr{} // the terminal or journal has the time
			}
			return at
		},
	}))
	return nil
}

func (a *app) logger() *slog.Logger {
	if a.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.log
}

func (a *app) now() time.Time {
	if a.env.Now != nil {
		return a.env.Now()
	}
	return time.Now()
}

// planPath resolves which plan file to read.
func (a *app) planPath() string {
	if a.configPath != "" {
		return a.configPath
	}
	if p := a.env.Getenv("HARTVAULT_CONFIG"); p != "" {
		return p
	}
	return "hartvault.yaml"
}

func (a *app) loadPlan() (*plan.Plan, error) {
	return plan.Load(a.planPath())
}

// DefaultEnv is the real process environment.
//
// HARTVAULT_NOW (RFC 3339), for tests only, starts the clock at that instant (it then
// runs on in real time): end-to-end tests use it to run prune weeks "later". It is
// not documented for users; an unreadable value is reported and ignored.
func DefaultEnv() Env {
	return Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Now: testClock(os.Getenv("HARTVAULT_NOW")),
		IsTerminal: isTerminal(os.Stderr)}
}

// testClock returns the clock HARTVAULT_NOW asks for, else time.Now.
func testClock(v string) func() time.Time {
	if v == "" {
		return time.Now
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hartvault: ignoring HARTVAULT_NOW: %v\n", err)
		return time.Now
	}
	offset := time.Until(at)
	return func() time.Time { return time.Now().Add(offset) }
}
