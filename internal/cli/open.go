package cli

import (
	"context"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"filippo.io/age"
	"golang.org/x/term"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/files"
	"github.com/hartonomous/hartvault/internal/engine/mssql"
	"github.com/hartonomous/hartvault/internal/engine/neo4j"
	"github.com/hartonomous/hartvault/internal/engine/postgres"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/stream"
)

// repoOptions turns the plan's repository section into repository options. Secrets
// are read only when a command needs them, and never appear in messages.
func (a *app) repoOptions(p *plan.Plan) repo.Options {
	r := p.Repository
	opts := repo.Options{
		URL:         r.URL,
		Replicas:    r.Replicas,
		Compression: r.Compression,
		Level:       r.CompressionLevel,
		VolumeSize:  int64(r.VolumeSize),
		TempDir:     r.TempDir,
		Tiers:       r.Tiers,
		Immutable:   r.Immutable.Std(),
		Logger:      a.logger(),
		Now:         a.now,
		ToolVersion: "hartvault " + Version,
	}
	switch {
	case r.Encryption == "none":
		opts.Keys.None = true
	case r.PassphraseEnv != "":
		name := r.PassphraseEnv
		opts.Keys.Passphrase = func() (string, error) {
			v := a.env.Getenv(name)
			if v == "" {
				return "", fmt.Errorf("the passphrase variable %s (repository.passphrase_env in %s) is not set", name, p.Path)
			}
			return v, nil
		}
	case r.PassphraseFile != "":
		path := r.PassphraseFile
		opts.Keys.Passphrase = func() (string, error) {
			b, err := os.ReadFile(path)
			if err != nil {
				return "", fmt.Errorf("passphrase file (repository.passphrase_file in %s): %w", p.Path, err)
			}
			v := strings.TrimRight(string(b), "\r\n")
			if v == "" {
				return "", fmt.Errorf("passphrase file %s is empty", path)
			}
			return v, nil
		}
	case len(r.Recipients) > 0:
		opts.Keys.Recipients = r.Recipients
		if r.IdentityFile != "" {
			path := r.IdentityFile
			opts.Keys.Identities = func() ([]age.Identity, error) { return stream.ReadIdentityFile(path) }
		}
	}
	return opts
}

// openRepo loads the plan and opens its repository.
func (a *app) openRepo(ctx context.Context) (*plan.Plan, *repo.Repo, error) {
	p, err := a.loadPlan()
	if err != nil {
		return nil, nil, err
	}
	r, err := repo.Open(ctx, a.repoOptions(p))
	if err != nil {
		return nil, nil, err
	}
	return p, r, nil
}

// openForReading opens the repository to read from: the replica named by replica
// when given, else the primary, falling back to each replica in turn when the
// primary cannot be opened (unreachable, missing) so a restore still works when
// the primary is gone.
func (a *app) openForReading(ctx context.Context, replica string) (*plan.Plan, *repo.Repo, error) {
	p, err := a.loadPlan()
	if err != nil {
		return nil, nil, err
	}
	opts := a.repoOptions(p)
	if replica != "" {
		url, err := pickReplica(p, replica)
		if err != nil {
			return nil, nil, err
		}
		opts.URL, opts.Replicas, opts.AsReplica = url, nil, true
		r, err := repo.Open(ctx, opts)
		return p, r, err
	}
	r, primaryErr := repo.Open(ctx, opts)
	if primaryErr == nil || len(p.Repository.Replicas) == 0 || !fallbackWorthy(primaryErr) {
		return p, r, primaryErr
	}
	for _, url := range p.Repository.Replicas {
		fmt.Fprintf(a.env.Stderr, "hartvault: warning: primary repository unavailable (%s): reading from replica %s\n", oneLine(primaryErr.Error()), url)
		opts.URL, opts.Replicas, opts.AsReplica = url, nil, true
		if r, err := repo.Open(ctx, opts); err == nil {
			return p, r, nil
		}
	}
	return p, nil, primaryErr
}

// openReplica opens a replica of the plan's repository as a repository of its own.
func (a *app) openReplica(ctx context.Context, p *plan.Plan, url string) (*repo.Repo, error) {
	opts := a.repoOptions(p)
	opts.URL, opts.Replicas, opts.AsReplica = url, nil, true
	return repo.Open(ctx, opts)
}

// fallbackWorthy tells storage trouble (worth trying a replica) from mistakes a
// replica shares (a wrong key, an unknown format).
func fallbackWorthy(err error) bool {
	msg := err.Error()
	return !strings.Contains(msg, "passphrase") && !strings.Contains(msg, "format version") && !strings.Contains(msg, "encrypt")
}

// pickReplica resolves --replica/--from-replica: a replica URL, its 1-based number
// in the plan, or its last path element (container, bucket or directory name).
func pickReplica(p *plan.Plan, name string) (string, error) {
	reps := p.Repository.Replicas
	if n, err := strconv.Atoi(name); err == nil && n >= 1 && n <= len(reps) {
		return reps[n-1], nil
	}
	for _, u := range reps {
		if u == name || path.Base(strings.TrimSuffix(u, "/")) == name {
			return u, nil
		}
	}
	if len(reps) == 0 {
		return "", usagef("the plan %s has no replicas", p.Path)
	}
	return "", usagef("no replica %q in %s (replicas: %s)", name, p.Path, strings.Join(reps, ", "))
}

// engineFor builds the engine of a plan source.
func engineFor(p *plan.Plan, name string) (engine.Engine, error) {
	src := p.Source(name)
	if src == nil {
		var names []string
		for _, s := range p.Sources {
			names = append(names, s.Name)
		}
		return nil, usagef("no source %q in %s (sources: %s)", name, p.Path, strings.Join(names, ", "))
	}
	switch src.Kind {
	case plan.KindFiles:
		return files.New(*src), nil
	case plan.KindPostgres:
		return postgres.New(*src, p.Path), nil
	case plan.KindMSSQL:
		return mssql.New(*src, mssql.Options{}), nil
	case plan.KindNeo4j:
		return neo4j.New(*src), nil
	}
	return nil, fmt.Errorf("source %s: kind %s is not supported by this build", name, src.Kind)
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// postgresEngine returns the PostgreSQL engine of a source, or a usage error.
func postgresEngine(p *plan.Plan, name string) (*postgres.Engine, error) {
	eng, err := engineFor(p, name)
	if err != nil {
		return nil, err
	}
	pe, ok := eng.(*postgres.Engine)
	if !ok {
		return nil, usagef("source %s is of kind %s, not postgres", name, eng.Kind())
	}
	return pe, nil
}
