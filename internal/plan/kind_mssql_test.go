package plan

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const mssqlHead = "repository:\n  url: azblob://backups\n  encryption: none\nsources:\n  - name: hartonomous-sql\n    kind: mssql\n    dsn_env: HARTVAULT_MSSQL_DSN\n"

func TestMSSQLSourceFromIssue(t *testing.T) {
	p := mustParse(t, "/etc/hv/hartvault.yaml", mssqlHead+`    databases: [Hartonomous, HartonomousArchive]
    mode: url
    options: { compression: true, checksum: true, verify: true, copy_only: false, encryption_certificate: "" }
`)
	s := p.Source("hartonomous-sql")
	if s.Kind != KindMSSQL || s.DSNEnv != "HARTVAULT_MSSQL_DSN" || s.Mode != MSSQLModeURL {
		t.Fatalf("source: %+v", s)
	}
	if len(s.Databases) != 2 || s.Databases[0] != "Hartonomous" || s.Databases[1] != "HartonomousArchive" {
		t.Errorf("databases: %q", s.Databases)
	}
	want := MSSQLOptions{Compression: true, Checksum: true, Verify: true, Stats: DefaultMSSQLStats}
	if s.MSSQLOptions != want {
		t.Errorf("options: %+v, want %+v", s.MSSQLOptions, want)
	}
	if s.SASLifetime != DefaultMSSQLSASLifetime || s.SASEnv != "" {
		t.Errorf("sas: %v %q", s.SASLifetime, s.SASEnv)
	}
}

func TestMSSQLDefaults(t *testing.T) {
	// No options at all: compression, checksum and verify are on, copy-only and
	// encryption off, STATS = 10.
	p := mustParse(t, "/etc/hv/hartvault.yaml", mssqlHead+"    databases: [db]\n    mode: url\n")
	if got, want := p.Sources[0].MSSQLOptions, (MSSQLOptions{Compression: true, Checksum: true, Verify: true, Stats: 10}); got != want {
		t.Errorf("defaults: %+v, want %+v", got, want)
	}
	// Options turned off explicitly stay off; those not named keep their default.
	p = mustParse(t, "/etc/hv/hartvault.yaml", mssqlHead+"    databases: [db]\n    mode: url\n    options:\n      compression: false\n      stats: 5\n      copy_only: true\n      encryption_certificate: BackupCert\n")
	if got, want := p.Sources[0].MSSQLOptions, (MSSQLOptions{Checksum: true, Verify: true, CopyOnly: true, EncryptionCertificate: "BackupCert", Stats: 5}); got != want {
		t.Errorf("explicit: %+v, want %+v", got, want)
	}
	// An empty options mapping is all defaults.
	p = mustParse(t, "/etc/hv/hartvault.yaml", mssqlHead+"    databases: [db]\n    mode: url\n    options: {}\n")
	if !p.Sources[0].MSSQLOptions.Compression || !p.Sources[0].MSSQLOptions.Verify {
		t.Errorf("empty options: %+v", p.Sources[0].MSSQLOptions)
	}
	p = mustParse(t, "/etc/hv/hartvault.yaml", mssqlHead+"    databases: [db]\n    mode: url\n    sas_lifetime: 3d\n    clr: true\n    clr_assemblies: [Hartonomous.Clr]\n")
	if s := p.Sources[0]; s.SASLifetime.Std() != 72*time.Hour || !s.CLR || len(s.CLRAssemblies) != 1 {
		t.Errorf("url extras: %+v", s)
	}
}

func TestMSSQLStreamMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses Unix paths")
	}
	p := mustParse(t, "/etc/hv/hartvault.yaml", mssqlHead+"    databases: [db]\n    mode: stream\n    staging_dir: /var/opt/mssql/backup\n")
	if s := p.Sources[0]; s.StagingDir != "/var/opt/mssql/backup" || s.LocalStagingDir != "/var/opt/mssql/backup" {
		t.Errorf("hartvault on the server host: %+v", s)
	}
	// SQL Server on Windows, hartvault sees the share elsewhere (relative to the plan).
	p = mustParse(t, "/etc/hv/hartvault.yaml", mssqlHead+"    databases: [db]\n    mode: stream\n    staging_dir: 'D:\\hartvault\\staging'\n    local_staging_dir: staging\n    set_full_recovery: true\n")
	if s := p.Sources[0]; s.StagingDir != `D:\hartvault\staging` || s.LocalStagingDir != filepath.Join("/etc/hv", "staging") || !s.SetFullRecovery {
		t.Errorf("split paths: %+v", s)
	}
	p = mustParse(t, "/etc/hv/hartvault.yaml", mssqlHead+"    databases: [db]\n    mode: stream\n    staging_dir: '\\\\sqlhost\\backup'\n    local_staging_dir: /mnt/sqlhost-backup\n")
	if s := p.Sources[0]; s.StagingDir != `\\sqlhost\backup` {
		t.Errorf("UNC: %+v", s)
	}
}

func TestMSSQLErrors(t *testing.T) {
	ok := "    databases: [db]\n    mode: url\n"
	noDSN := strings.Replace(mssqlHead, "    dsn_env: HARTVAULT_MSSQL_DSN\n", "", 1)
	for _, c := range []struct {
		name, text, want string
	}{
		{"missing dsn_env", noDSN + ok,
			"hartvault.yaml:5: sources[0].dsn_env: missing required field (the name of the environment variable that holds the DSN)"},
		{"dsn instead of env name", strings.Replace(mssqlHead, "HARTVAULT_MSSQL_DSN", "'sqlserver://sa:hunter2@db?database=x'", 1) + ok,
			"hartvault.yaml:7: sources[0].dsn_env: not a valid environment variable name (give the name of the variable that holds the DSN, not the DSN)"},
		{"missing databases", mssqlHead + "    mode: url\n",
			"hartvault.yaml:5: sources[0].databases: missing required field"},
		{"empty databases", mssqlHead + "    databases: []\n    mode: url\n",
			"hartvault.yaml:8: sources[0].databases: must list at least one database"},
		{"empty database name", mssqlHead + "    databases: [a, '']\n    mode: url\n",
			"hartvault.yaml:8: sources[0].databases[1]: empty database name"},
		{"long database name", mssqlHead + "    databases: [" + strings.Repeat("x", 129) + "]\n    mode: url\n",
			"hartvault.yaml:8: sources[0].databases[0]: database name is longer than 128 characters"},
		{"duplicate database ignoring case", mssqlHead + "    databases:\n      - Hartonomous\n      - hartonomous\n    mode: url\n",
			`hartvault.yaml:10: sources[0].databases[1]: "hartonomous" is listed twice (also databases[0])`},
		{"tempdb", mssqlHead + "    databases: [TempDB]\n    mode: url\n",
			"hartvault.yaml:8: sources[0].databases[0]: tempdb cannot be backed up"},
		{"databases not a list", mssqlHead + "    databases: Hartonomous\n    mode: url\n",
			"hartvault.yaml:8: sources[0].databases: expected a list of strings, got a string"},
		{"missing mode", mssqlHead + "    databases: [db]\n",
			"hartvault.yaml:5: sources[0].mode: missing required field (url: SQL Server writes to the azblob repository itself; stream: SQL Server writes to staging_dir and hartvault stores the file)"},
		{"bad mode", mssqlHead + "    databases: [db]\n    mode: pipe\n",
			`hartvault.yaml:9: sources[0].mode: unknown mode "pipe" (want url or stream)`},
		{"staging with url", mssqlHead + ok + "    staging_dir: /x\n",
			"hartvault.yaml:10: sources[0].staging_dir: only valid with mode: stream"},
		{"sas with stream", mssqlHead + "    databases: [db]\n    mode: stream\n    staging_dir: /x\n    sas_env: SAS\n",
			"hartvault.yaml:11: sources[0].sas_env: only valid with mode: url"},
		{"stream without staging", mssqlHead + "    databases: [db]\n    mode: stream\n",
			"hartvault.yaml:5: sources[0].staging_dir: missing required field (a directory on the SQL Server host that SQL Server can write and hartvault can read)"},
		{"relative staging", mssqlHead + "    databases: [db]\n    mode: stream\n    staging_dir: backup\n",
			`hartvault.yaml:10: sources[0].staging_dir: "backup" is not an absolute path`},
		{"windows staging needs local", mssqlHead + "    databases: [db]\n    mode: stream\n    staging_dir: 'D:\\stage'\n",
			`sources[0].local_staging_dir: missing required field: staging_dir "D:\\stage" is not a path on this host`},
		{"sas_env bad", mssqlHead + ok + "    sas_env: 'sv=2022&sig=abc'\n",
			"hartvault.yaml:10: sources[0].sas_env: not a valid environment variable name (give the name of the variable that holds the SAS token, not the SAS token)"},
		{"sas lifetime with sas_env", mssqlHead + ok + "    sas_env: SAS\n    sas_lifetime: 2d\n",
			"hartvault.yaml:11: sources[0].sas_lifetime: only valid when hartvault mints the SAS (without sas_env)"},
		{"sas lifetime too short", mssqlHead + ok + "    sas_lifetime: 10m\n",
			"hartvault.yaml:10: sources[0].sas_lifetime: 10m is out of range 1h..365d"},
		{"stats range", mssqlHead + ok + "    options: {stats: 0}\n",
			"hartvault.yaml:10: sources[0].options.stats: 0 is out of range 1..100 (percent between progress messages)"},
		{"options not bool", mssqlHead + ok + "    options: {compression: yes please}\n",
			"hartvault.yaml:10: sources[0].options.compression: expected true or false, got a string"},
		{"unknown option", mssqlHead + ok + "    options: {compresion: true}\n",
			"hartvault.yaml:10: sources[0].options.compresion: unknown field"},
		{"empty certificate name", mssqlHead + ok + "    options: {encryption_certificate: ' '}\n",
			"hartvault.yaml:10: sources[0].options.encryption_certificate: empty certificate name"},
		{"clr_assemblies without clr", mssqlHead + ok + "    clr_assemblies: [A]\n",
			"hartvault.yaml:10: sources[0].clr_assemblies: only valid with clr: true"},
		{"clr assembly twice", mssqlHead + ok + "    clr: true\n    clr_assemblies: [A, a]\n",
			`hartvault.yaml:11: sources[0].clr_assemblies[1]: "a" is listed twice (also clr_assemblies[0])`},
		{"files field on mssql", mssqlHead + ok + "    paths: [/a]\n",
			"hartvault.yaml:10: sources[0].paths: field paths is not valid for kind mssql"},
		{"mssql field on files", repo + "sources:\n  - name: a\n    kind: files\n    paths: [/a]\n    databases: [x]\n",
			"hartvault.yaml:8: sources[0].databases: field databases is not valid for kind files"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := parseError(t, c.text)
			if !strings.Contains(got, c.want) {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
			if strings.Contains(got, "hunter2") || strings.Contains(got, "sig=abc") {
				t.Errorf("message repeats a secret: %s", got)
			}
		})
	}
}

func TestServerAbsPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/var/opt/mssql/backup": true, `D:\staging`: true, "d:/staging": true, `\\host\share`: true,
		"backup": false, `D:staging`: false, `\\`: false, "": false, `.\x`: false,
	} {
		if got := serverAbsPath(p); got != want {
			t.Errorf("serverAbsPath(%q) = %v, want %v", p, got, want)
		}
	}
}
