// Package plan reads and validates the plan file: the one YAML file that says where the
// repository is and what to back up. Errors name the file, line and field.
package plan

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Plan is a validated plan file.
type Plan struct {
	// Path is the file the plan was read from (for messages).
	Path       string
	Repository Repository
	Sources    []Source
	// Timezone names the zone schedules are read in ("" is the host's); Location is it loaded.
	Timezone string
	Location *time.Location
	Agent    Agent
	Recovery Recovery
	Drills   Drills
}

// Repository says where backups go and how they are protected.
type Repository struct {
	URL string `yaml:"url"`
	// Exactly one key source for encryption, unless Encryption is "none":
	PassphraseEnv  string   `yaml:"passphrase_env"`
	PassphraseFile string   `yaml:"passphrase_file"`
	Recipients     []string `yaml:"recipients"`    // age X25519 public keys (age1...)
	IdentityFile   string   `yaml:"identity_file"` // age identities, needed to restore in recipients mode
	// Encryption is "" (on, the default) or "none" (explicitly off).
	Encryption string `yaml:"encryption"`
	// Compression is "zstd" (default) or "none".
	Compression string `yaml:"compression"`
	// CompressionLevel is the zstd level, 1..19 mapped to the library's speeds; default 3
	// (0 when Compression is none).
	CompressionLevel int      `yaml:"compression_level"`
	Replicas         []string `yaml:"replicas"`
	// VolumeSize is the plaintext size at which a pack volume is sealed; default 256 MiB,
	// 64 KiB..4 GiB.
	VolumeSize Size `yaml:"volume_size"`
	// TempDir is where uploads to remote stores are spooled; default the OS temp dir.
	TempDir string `yaml:"temp_dir"`
	// Tiers maps a backup type (full, diff, log) or a source kind (files, postgres,
	// mssql, neo4j: it wins over the type) to an access tier: hot, cool, cold, archive.
	Tiers map[string]string `yaml:"tiers"`
	// Immutable writes every object with a retention lock for this long (see ops.go).
	Immutable Duration `yaml:"immutable"`
}

// Source kinds. See kinds.go for how a kind declares its fields.
const (
	KindFiles    = "files"
	KindPostgres = "postgres"
)

// Source is one thing to back up.
type Source struct {
	Name string `yaml:"name"`
	Kind string `yaml:"kind"`
	// Line is the line of the source's entry in the plan file (for messages).
	Line int `yaml:"-"`

	// Operations, for every kind (see ops.go): when backups run, how long they are
	// kept, and when their age raises an alert.
	Schedule    Schedule  `yaml:"schedule"`
	CheckEvery  Duration  `yaml:"check_every"` // how often on-change sources are checked (default 1m)
	Retention   Retention `yaml:"retention"`
	Alerts      Alerts    `yaml:"alerts"`
	MaxDuration Duration  `yaml:"max_duration"` // a backup running longer raises an alert (default 3x its 7-day average)

	// kind: files
	Paths   []string `yaml:"paths"`
	Exclude []string `yaml:"exclude"`

	// kind: postgres
	DataDir  string `yaml:"data_dir"` // the cluster's data directory
	Conninfo string `yaml:"conninfo"` // libpq connection string (no password: use .pgpass or PGPASSWORD)
	BinDir   string `yaml:"bin_dir"`  // PostgreSQL binaries; default from PATH or pg_config

	// kind: mssql (fields added with the SQL Server engine; see kind_mssql.go)
	DSNEnv          string       `yaml:"dsn_env"`           // environment variable holding a go-mssqldb DSN
	Databases       []string     `yaml:"databases"`         // databases to back up
	Mode            string       `yaml:"mode"`              // url | stream
	MSSQLOptions    MSSQLOptions `yaml:"options"`           // BACKUP options
	SASEnv          string       `yaml:"sas_env"`           // url mode: environment variable holding a SAS token for the container
	SASLifetime     Duration     `yaml:"sas_lifetime"`      // url mode: lifetime of a SAS hartvault mints (default 24h)
	StagingDir      string       `yaml:"staging_dir"`       // stream mode: directory on the SQL Server host
	LocalStagingDir string       `yaml:"local_staging_dir"` // stream mode: the same directory as hartvault sees it
	SetFullRecovery bool         `yaml:"set_full_recovery"` // log backups may switch a SIMPLE database to FULL
	CLR             bool         `yaml:"clr"`               // also export CLR assemblies and their deploy script
	CLRAssemblies   []string     `yaml:"clr_assemblies"`    // only these assemblies (default: all user assemblies)

	// kind: neo4j (fields added with the Neo4j engine)
	// (mode, shared with mssql above: logical | admin; see kind_neo4j.go)
	URI          string `yaml:"uri"`           // Bolt URI of the server (bolt://, neo4j://, +s, +ssc)
	User         string `yaml:"user"`          // Bolt user; empty: no authentication
	PasswordEnv  string `yaml:"password_env"`  // environment variable holding the password (never the password)
	Database     string `yaml:"database"`      // database name (default neo4j)
	Neo4jHome    string `yaml:"neo4j_home"`    // admin mode: the installation whose bin/neo4j-admin is run
	StopCommand  string `yaml:"stop_command"`  // admin mode on Community: stops the server before a dump or load
	StartCommand string `yaml:"start_command"` // admin mode on Community: starts it again, even when the dump failed
}

// Duration is a time span written as 30s, 90m, 26h, 7d or 4w (also combinations Go's
// time.ParseDuration accepts, such as 1h30m).
type Duration time.Duration

// Size is a byte count written as a number or with a unit: 512KiB, 256MiB, 1GiB, 1GB.
type Size int64

// Error is a plan-file mistake. Its message names the file, line and field:
// "hartvault.yaml:7: sources[0].kind: unknown kind \"filez\" (want files)".
type Error struct {
	File  string
	Line  int // 0 when the mistake has no line (a missing file)
	Field string
	Msg   string
}

func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Field != "":
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.Field != "":
		return fmt.Sprintf("%s: %s: %s", e.File, e.Field, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
}

// Source returns the source with the given name, or nil.
func (p *Plan) Source(name string) *Source {
	for i := range p.Sources {
		if p.Sources[i].Name == name {
			return &p.Sources[i]
		}
	}
	return nil
}

// document is the YAML layout of a plan file. Plan itself carries no yaml tags, so that
// Path is never read from the file.
type document struct {
	Repository Repository `yaml:"repository"`
	Sources    []Source   `yaml:"sources"`
	Timezone   string     `yaml:"timezone"`
	Agent      Agent      `yaml:"agent"`
	Recovery   Recovery   `yaml:"recovery"`
	Drills     Drills     `yaml:"drills"`
}

// Load reads and validates the plan file at path.
func Load(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := "cannot read plan file: "
		var pe *fs.PathError
		switch {
		case errors.Is(err, fs.ErrNotExist):
			msg += "no such file"
		case errors.As(err, &pe):
			msg += pe.Err.Error() // the path is already in the message prefix
		default:
			msg += err.Error()
		}
		return nil, &Error{File: path, Msg: msg}
	}
	return Parse(path, data)
}

// Parse decodes and validates a plan. file names the plan in messages, and its directory
// is the base for relative paths and file URLs. Defaults are filled in, paths made
// absolute and URLs normalized. Every error is an *Error.
func Parse(file string, data []byte) (*Plan, error) {
	p, err := parse(file, data)
	if err != nil {
		err.File = file
		return nil, err
	}
	return p, nil
}

func parse(file string, data []byte) (*Plan, *Error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a BOM from Windows editors
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, convertYAMLError(file, err, nil)
	}
	var body ast.Node
	for _, d := range f.Docs {
		switch d.Body.(type) {
		case nil, *ast.DirectiveNode: // comments only, or %YAML before the first ---
			continue
		}
		if body != nil {
			line := 1
			if tk := d.Start; tk != nil && tk.Position != nil {
				line = tk.Position.Line
			}
			return nil, &Error{Line: line, Msg: "a plan file holds one YAML document; found a second one"}
		}
		body = d.Body
	}

	sh := newShape()
	var doc document
	if body != nil {
		if e := sh.walk(body, reflect.TypeFor[document](), "", 1); e != nil {
			return nil, e
		}
		if err := yaml.NodeToValue(body, &doc, yaml.Strict()); err != nil {
			return nil, convertYAMLError(file, err, sh)
		}
	}

	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, &Error{Msg: fmt.Sprintf("cannot find the plan file's directory: %v", err)}
	}
	p := &Plan{Path: file, Repository: doc.Repository, Sources: doc.Sources, Timezone: doc.Timezone, Agent: doc.Agent,
		Recovery: doc.Recovery, Drills: doc.Drills}
	v := &validator{file: file, dir: dir, sh: sh}
	if e := v.plan(p); e != nil {
		return nil, e
	}
	return p, nil
}
