package plan

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"
)

// KindMSSQL is a SQL Server source: databases backed up with BACKUP DATABASE/LOG, and
// optionally the CLR assemblies they hold.
const KindMSSQL = "mssql"

// SQL Server modes.
const (
	// MSSQLModeURL: SQL Server writes the backup to the azblob repository itself
	// (BACKUP ... TO URL with a SAS credential).
	MSSQLModeURL = "url"
	// MSSQLModeStream: SQL Server writes to StagingDir and hartvault stores the file
	// through its own compression, encryption and checksums, into any repository.
	MSSQLModeStream = "stream"
)

// SQL Server defaults and limits.
const (
	DefaultMSSQLStats       = 10
	DefaultMSSQLSASLifetime = Duration(24 * time.Hour)
	MinMSSQLSASLifetime     = Duration(time.Hour)
	MaxMSSQLSASLifetime     = Duration(365 * 24 * time.Hour)
	maxSysname              = 128 // SQL Server identifiers are sysname, nvarchar(128)
)

// MSSQLOptions are the BACKUP options of a kind mssql source. Compression, Checksum and
// Verify default to true when the key is absent.
type MSSQLOptions struct {
	Compression bool `yaml:"compression"` // WITH COMPRESSION
	Checksum    bool `yaml:"checksum"`    // WITH CHECKSUM
	Verify      bool `yaml:"verify"`      // RESTORE VERIFYONLY after each backup
	CopyOnly    bool `yaml:"copy_only"`   // WITH COPY_ONLY: full backups only, outside any chain
	// EncryptionCertificate names a server certificate in master: WITH ENCRYPTION
	// (ALGORITHM = AES_256, SERVER CERTIFICATE = ...). "" means no encryption.
	EncryptionCertificate string `yaml:"encryption_certificate"`
	// Stats is the STATS percentage step of progress messages (default 10).
	Stats int `yaml:"stats"`
}

func mssqlFields() []string {
	return []string{"dsn_env", "databases", "mode", "options", "sas_env", "sas_lifetime", "staging_dir",
		"local_staging_dir", "set_full_recovery", "clr", "clr_assemblies"}
}

// validateMSSQL checks a kind mssql source and fills its defaults. Messages name
// environment variables, never their values.
func validateMSSQL(v *validator, field string, s *Source) *Error {
	if err := validateEnvField(v, field+".dsn_env", s.DSNEnv, "DSN", true); err != nil {
		return err
	}
	if err := validateDatabases(v, field, s.Databases); err != nil {
		return err
	}
	switch s.Mode {
	case "":
		return v.errf(field+".mode", "missing required field (url: SQL Server writes to the azblob repository itself; stream: SQL Server writes to staging_dir and hartvault stores the file)")
	case MSSQLModeURL:
		for _, k := range []string{"staging_dir", "local_staging_dir"} {
			if v.sh.hasKey(field, k) {
				return v.errf(field+"."+k, "only valid with mode: stream")
			}
		}
		if err := validateEnvField(v, field+".sas_env", s.SASEnv, "SAS token", false); err != nil {
			return err
		}
		switch {
		case s.SASLifetime == 0:
			s.SASLifetime = DefaultMSSQLSASLifetime
		case s.SASEnv != "":
			return v.errf(field+".sas_lifetime", "only valid when hartvault mints the SAS (without sas_env)")
		case s.SASLifetime < MinMSSQLSASLifetime || s.SASLifetime > MaxMSSQLSASLifetime:
			return v.errf(field+".sas_lifetime", "%s is out of range %s..%s", s.SASLifetime, MinMSSQLSASLifetime, MaxMSSQLSASLifetime)
		}
	case MSSQLModeStream:
		for _, k := range []string{"sas_env", "sas_lifetime"} {
			if v.sh.hasKey(field, k) {
				return v.errf(field+"."+k, "only valid with mode: url")
			}
		}
		if s.StagingDir == "" {
			return v.errf(field+".staging_dir", "missing required field (a directory on the SQL Server host that SQL Server can write and hartvault can read)")
		}
		if !serverAbsPath(s.StagingDir) {
			return v.errf(field+".staging_dir", "%q is not an absolute path (it is a path on the SQL Server host: /var/opt/mssql/backup, D:\\staging or \\\\host\\share)", s.StagingDir)
		}
		if s.LocalStagingDir == "" {
			// hartvault runs on the SQL Server host: the same directory.
			if !filepath.IsAbs(s.StagingDir) {
				return v.errf(field+".local_staging_dir", "missing required field: staging_dir %q is not a path on this host, so say where hartvault sees that directory", s.StagingDir)
			}
			s.LocalStagingDir = s.StagingDir
		}
		if err := v.localField(field+".local_staging_dir", &s.LocalStagingDir); err != nil {
			return err
		}
	default:
		return v.errf(field+".mode", "unknown mode %q (want url or stream)", s.Mode)
	}
	if err := validateMSSQLOptions(v, field, &s.MSSQLOptions); err != nil {
		return err
	}
	if len(s.CLRAssemblies) > 0 && !s.CLR {
		return v.errf(field+".clr_assemblies", "only valid with clr: true")
	}
	seen := map[string]int{}
	for i, a := range s.CLRAssemblies {
		f := fmt.Sprintf("%s.clr_assemblies[%d]", field, i)
		if err := checkSysname(v, f, a, "assembly name"); err != nil {
			return err
		}
		if j, dup := seen[strings.ToLower(a)]; dup {
			return v.errf(f, "%q is listed twice (also clr_assemblies[%d])", a, j)
		}
		seen[strings.ToLower(a)] = i
	}
	return nil
}

func validateMSSQLOptions(v *validator, field string, o *MSSQLOptions) *Error {
	of := field + ".options"
	for key, p := range map[string]*bool{"compression": &o.Compression, "checksum": &o.Checksum, "verify": &o.Verify} {
		if !v.sh.hasKey(of, key) {
			*p = true
		}
	}
	if o.EncryptionCertificate != "" {
		if err := checkSysname(v, of+".encryption_certificate", o.EncryptionCertificate, "certificate name"); err != nil {
			return err
		}
	}
	switch {
	case !v.sh.hasKey(of, "stats"):
		o.Stats = DefaultMSSQLStats
	case o.Stats < 1 || o.Stats > 100:
		return v.errf(of+".stats", "%d is out of range 1..100 (percent between progress messages)", o.Stats)
	}
	return nil
}

// validateEnvField checks a field that names an environment variable. A value that
// looks like the secret itself is reported without repeating it.
func validateEnvField(v *validator, field, name, what string, required bool) *Error {
	if name == "" {
		if required {
			return v.errf(field, "missing required field (the name of the environment variable that holds the %s)", what)
		}
		return nil
	}
	if !envNameRE.MatchString(name) {
		return v.errf(field, "not a valid environment variable name (give the name of the variable that holds the %s, not the %s)", what, what)
	}
	return nil
}

func validateDatabases(v *validator, field string, dbs []string) *Error {
	df := field + ".databases"
	if len(dbs) == 0 {
		if v.sh.hasKey(field, "databases") && dbs != nil {
			return v.errf(df, "must list at least one database")
		}
		return v.errf(df, "missing required field")
	}
	seen := map[string]int{}
	for i, db := range dbs {
		f := fmt.Sprintf("%s[%d]", df, i)
		if err := checkSysname(v, f, db, "database name"); err != nil {
			return err
		}
		// Default collations compare names without case: Hartonomous and hartonomous
		// are the same database.
		key := strings.ToLower(db)
		if key == "tempdb" {
			return v.errf(f, "tempdb cannot be backed up")
		}
		if j, dup := seen[key]; dup {
			return v.errf(f, "%q is listed twice (also databases[%d])", db, j)
		}
		seen[key] = i
	}
	return nil
}

func checkSysname(v *validator, field, name, what string) *Error {
	switch {
	case strings.TrimSpace(name) == "":
		return v.errf(field, "empty %s", what)
	case utf8.RuneCountInString(name) > maxSysname:
		return v.errf(field, "%s is longer than %d characters", what, maxSysname)
	case strings.ContainsRune(name, 0) || !utf8.ValidString(name):
		return v.errf(field, "%s holds a NUL byte or invalid UTF-8", what)
	}
	return nil
}

// serverAbsPath reports whether p is absolute on a Windows or a Linux SQL Server host,
// whatever OS hartvault runs on.
func serverAbsPath(p string) bool {
	switch {
	case strings.HasPrefix(p, "/"):
		return true
	case strings.HasPrefix(p, `\\`):
		return len(p) > 2
	case len(p) >= 3 && isLetter(p[0]) && p[1] == ':' && (p[2] == '\\' || p[2] == '/'):
		return true
	}
	return false
}
