package plan

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"filippo.io/age"
)

// Defaults and limits.
const (
	DefaultCompression      = "zstd"
	DefaultCompressionLevel = 3
	MinCompressionLevel     = 1
	MaxCompressionLevel     = 19
	DefaultVolumeSize       = Size(256 << 20)
	MinVolumeSize           = Size(64 << 10)
	MaxVolumeSize           = Size(4 << 30)
)

var (
	sourceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// validator fills defaults and checks a decoded plan; sh supplies the lines.
type validator struct {
	file string
	dir  string // absolute directory of the plan file, for relative paths
	sh   *shape
}

func (v *validator) errf(field, format string, args ...any) *Error {
	return &Error{File: v.file, Line: v.sh.line(field), Field: field, Msg: fmt.Sprintf(format, args...)}
}

// localPath makes a path from the plan absolute (relative to the plan file) and clean.
func (v *validator) localPath(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("empty path")
	case p == "~" || strings.HasPrefix(p, "~/") || strings.HasPrefix(p, `~\`):
		return "", errors.New("~ is not expanded; write the full path")
	case filepath.IsAbs(p):
		return filepath.Clean(p), nil
	}
	return filepath.Join(v.dir, p), nil // Join cleans
}

// localField normalizes an optional path field in place.
func (v *validator) localField(field string, p *string) *Error {
	if *p == "" {
		return nil
	}
	abs, err := v.localPath(*p)
	if err != nil {
		return v.errf(field, "%s", err)
	}
	*p = abs
	return nil
}

func (v *validator) plan(p *Plan) *Error {
	if !v.sh.hasKey("", "repository") {
		return v.errf("repository", "missing required field")
	}
	if err := v.repository(&p.Repository); err != nil {
		return err
	}
	if err := v.sources(p.Sources); err != nil {
		return err
	}
	return v.ops(p)
}

func (v *validator) repository(r *Repository) *Error {
	if r.URL == "" {
		return v.errf("repository.url", "missing required field")
	}
	u, err := NormalizeURL(r.URL, v.dir)
	if err != nil {
		return v.errf("repository.url", "%s", err)
	}
	r.URL = u

	if err := v.encryption(r); err != nil {
		return err
	}

	switch r.Compression {
	case "":
		r.Compression = DefaultCompression
	case "zstd", "none":
	default:
		return v.errf("repository.compression", "unknown compression %q (want zstd or none)", r.Compression)
	}
	switch {
	case r.Compression == "none" && r.CompressionLevel != 0:
		return v.errf("repository.compression_level", "not valid with compression: none")
	case r.Compression == "none":
	case r.CompressionLevel == 0:
		r.CompressionLevel = DefaultCompressionLevel
	case r.CompressionLevel < MinCompressionLevel || r.CompressionLevel > MaxCompressionLevel:
		return v.errf("repository.compression_level", "%d is out of range %d..%d", r.CompressionLevel, MinCompressionLevel, MaxCompressionLevel)
	}

	seen := map[string]int{}
	for i, raw := range r.Replicas {
		f := fmt.Sprintf("repository.replicas[%d]", i)
		if raw == "" {
			return v.errf(f, "empty URL")
		}
		u, err := NormalizeURL(raw, v.dir)
		if err != nil {
			return v.errf(f, "%s", err)
		}
		if u == r.URL {
			return v.errf(f, "same as repository.url")
		}
		if j, dup := seen[u]; dup {
			return v.errf(f, "same as replicas[%d]", j)
		}
		seen[u] = i
		r.Replicas[i] = u
	}

	switch {
	case r.VolumeSize == 0:
		r.VolumeSize = DefaultVolumeSize
	case r.VolumeSize < MinVolumeSize:
		return v.errf("repository.volume_size", "%s is below the minimum %s", r.VolumeSize, MinVolumeSize)
	case r.VolumeSize > MaxVolumeSize:
		return v.errf("repository.volume_size", "%s is above the maximum %s", r.VolumeSize, MaxVolumeSize)
	}

	return v.localField("repository.temp_dir", &r.TempDir)
}

// encryption checks the key settings. Messages name fields, never their values, except
// for public recipients and environment variable names.
func (v *validator) encryption(r *Repository) *Error {
	var set []string // key settings present, in field order
	if r.PassphraseEnv != "" {
		set = append(set, "passphrase_env")
	}
	if r.PassphraseFile != "" {
		set = append(set, "passphrase_file")
	}
	if len(r.Recipients) > 0 {
		set = append(set, "recipients")
	}

	switch r.Encryption {
	case "none":
		if r.IdentityFile != "" {
			set = append(set, "identity_file")
		}
		if len(set) > 0 {
			return v.errf("repository."+set[0], "encryption: none conflicts with %s", set[0])
		}
		return nil
	case "":
	default:
		return v.errf("repository.encryption", "unknown value %q (want none, or leave it out to encrypt)", r.Encryption)
	}

	if r.IdentityFile != "" && len(r.Recipients) == 0 {
		return v.errf("repository.identity_file", "only valid with recipients (recipients encrypt, identity_file decrypts)")
	}
	switch len(set) {
	case 0:
		return v.errf("repository", "no encryption key: set one of passphrase_env, passphrase_file or recipients (or encryption: none)")
	case 1:
	default:
		return v.errf("repository."+set[1], "conflicts with %s: set only one of passphrase_env, passphrase_file, recipients", set[0])
	}

	if r.PassphraseEnv != "" && !envNameRE.MatchString(r.PassphraseEnv) {
		// Not echoed: a passphrase written here by mistake must not reach the logs.
		return v.errf("repository.passphrase_env", "not a valid environment variable name (give the name of the variable that holds the passphrase, not the passphrase)")
	}
	if err := v.localField("repository.passphrase_file", &r.PassphraseFile); err != nil {
		return err
	}
	for i, rc := range r.Recipients {
		f := fmt.Sprintf("repository.recipients[%d]", i)
		switch {
		case rc == "":
			return v.errf(f, "empty recipient")
		case strings.HasPrefix(strings.ToUpper(rc), "AGE-SECRET-KEY-"):
			// Never echo it: this is a private key pasted in the wrong place.
			return v.errf(f, "this is an age identity (a secret key), not a recipient; keep it in identity_file and list its public key (age1...) here")
		}
		if _, err := age.ParseX25519Recipient(rc); err != nil {
			return v.errf(f, "not an age X25519 recipient (want age1...)")
		}
	}
	return v.localField("repository.identity_file", &r.IdentityFile)
}

func (v *validator) sources(srcs []Source) *Error {
	specs := kindSpecs()
	firstLine := map[string]int{}
	for i := range srcs {
		s := &srcs[i]
		f := fmt.Sprintf("sources[%d]", i)
		s.Line = v.sh.line(f)

		switch {
		case s.Name == "":
			return v.errf(f+".name", "missing required field")
		case !sourceNameRE.MatchString(s.Name):
			return v.errf(f+".name", "invalid name %q (want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)", s.Name)
		}
		if l, dup := firstLine[s.Name]; dup {
			return v.errf(f+".name", "duplicate source name %q (first at line %d)", s.Name, l)
		}
		firstLine[s.Name] = v.sh.line(f + ".name")

		if s.Kind == "" {
			return v.errf(f+".kind", "missing required field")
		}
		spec, ok := specs[s.Kind]
		if !ok {
			return v.errf(f+".kind", "unknown kind %q (want %s)", s.Kind, kindNames(specs))
		}
		if k, ok := checkKindFields(v.sh.keys[f], s.Kind, specs); !ok {
			return v.errf(f+"."+k, "field %s is not valid for kind %s", k, s.Kind)
		}
		if err := spec.validate(v, f, s); err != nil {
			return err
		}
	}
	return nil
}
