package plan

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// userPlan is the plan from the design notes, exactly as users write it.
const userPlan = `repository:
  url: file:///var/lib/hartvault        # or azblob://CONTAINER, s3://BUCKET, gs://BUCKET
  passphrase_env: HARTVAULT_PASSPHRASE   # or passphrase_file: PATH; or recipients: [age1...] plus identity_file: PATH to restore
  compression: zstd                      # zstd (default, level 3) | none
  replicas: []                           # more repository URLs; every committed backup is copied there too
sources:
  - name: assemblies
    kind: files
    paths: [/opt/hartonomous/assemblies, /opt/hartonomous/scripts/deploy-clr.sql]
    exclude: ["*.tmp"]
`

// repo is a valid repository block (lines 1-3) for error cases about other fields.
const repo = "repository:\n  url: file:///var/lib/hartvault\n  passphrase_env: HARTVAULT_PASSPHRASE\n"

func mustParse(t *testing.T, file, text string) *Plan {
	t.Helper()
	p, err := Parse(file, []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

// parseError parses text as hartvault.yaml and returns the message of the *Error.
func parseError(t *testing.T, text string) string {
	t.Helper()
	p, err := Parse("hartvault.yaml", []byte(text))
	if err == nil {
		t.Fatalf("Parse succeeded, want an error; plan: %+v", p)
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %T is not a *plan.Error: %v", err, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("message has more than one line: %q", err)
	}
	return err.Error()
}

func TestParseUserPlan(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the plan uses Unix paths")
	}
	p := mustParse(t, "/etc/hartvault/hartvault.yaml", userPlan)
	want := &Plan{
		Path: "/etc/hartvault/hartvault.yaml",
		Repository: Repository{
			URL:              "file:///var/lib/hartvault",
			PassphraseEnv:    "HARTVAULT_PASSPHRASE",
			Compression:      "zstd",
			CompressionLevel: 3,
			Replicas:         []string{},
			VolumeSize:       256 << 20,
		},
		Sources: []Source{{
			Name:       "assemblies",
			Kind:       KindFiles,
			Line:       7,
			Paths:      []string{"/opt/hartonomous/assemblies", "/opt/hartonomous/scripts/deploy-clr.sql"},
			Exclude:    []string{"*.tmp"},
			CheckEvery: DefaultCheckEvery,
		}},
		Location: time.Local,
		Agent:    Agent{Listen: DefaultListen},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
	if got, ok := p.Repository.LocalPath(); !ok || got != "/var/lib/hartvault" {
		t.Errorf("LocalPath = %q, %v", got, ok)
	}
	if p.Source("assemblies") != &p.Sources[0] || p.Source("nope") != nil {
		t.Error("Source lookup is wrong")
	}
}

func TestLoadExample(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the example uses Unix paths")
	}
	path := filepath.Join("..", "..", "examples", "hartonomous.yaml")
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Repository
	if r.URL != "file:///var/lib/hartvault" || r.PassphraseEnv != "HARTVAULT_PASSPHRASE" ||
		r.Compression != "zstd" || r.CompressionLevel != 3 || len(r.Replicas) != 0 || r.VolumeSize != DefaultVolumeSize {
		t.Errorf("repository = %+v", r)
	}
	if len(p.Sources) != 2 {
		t.Fatalf("got %d sources, want 2", len(p.Sources))
	}
	a, c := p.Source("assemblies"), p.Source("config")
	if a == nil || c == nil {
		t.Fatalf("sources = %+v", p.Sources)
	}
	if !slices.Equal(a.Paths, []string{"/opt/hartonomous/assemblies", "/opt/hartonomous/scripts/deploy-clr.sql"}) ||
		!slices.Equal(a.Exclude, []string{"*.tmp"}) || a.Kind != KindFiles {
		t.Errorf("assemblies = %+v", a)
	}
	if !slices.Equal(c.Paths, []string{"/etc/hartonomous"}) || c.Kind != KindFiles {
		t.Errorf("config = %+v", c)
	}
	if p.Path != path {
		t.Errorf("Path = %q", p.Path)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.yaml")
	_, err := Load(path)
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want *Error", err)
	}
	if pe.Line != 0 || pe.Msg != "cannot read plan file: no such file" || err.Error() != path+": cannot read plan file: no such file" {
		t.Errorf("got %#v", pe)
	}
}

func TestParseValid(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	recipient := id.Recipient().String()
	tests := []struct {
		name  string
		text  string
		check func(t *testing.T, p *Plan)
	}{
		{"no sources", repo, func(t *testing.T, p *Plan) {
			if len(p.Sources) != 0 {
				t.Errorf("sources = %+v", p.Sources)
			}
		}},
		{"empty sources", repo + "sources:\n", nil},
		{"encryption none", "repository:\n  url: s3://bucket\n  encryption: none\n", func(t *testing.T, p *Plan) {
			if p.Repository.Encryption != "none" || p.Repository.URL != "s3://bucket" {
				t.Errorf("repository = %+v", p.Repository)
			}
		}},
		{"recipients with identity", "repository:\n  url: gs://b\n  recipients: [" + recipient + "]\n  identity_file: /keys/id.txt\n", nil},
		{"recipients alone", "repository:\n  url: azblob://c\n  recipients:\n    - " + recipient + "\n", nil},
		{"compression none", repo + "  compression: none\n", func(t *testing.T, p *Plan) {
			if p.Repository.Compression != "none" || p.Repository.CompressionLevel != 0 {
				t.Errorf("repository = %+v", p.Repository)
			}
		}},
		{"compression level", repo + "  compression_level: 19\n", func(t *testing.T, p *Plan) {
			if p.Repository.CompressionLevel != 19 {
				t.Errorf("level = %d", p.Repository.CompressionLevel)
			}
		}},
		{"volume size int", repo + "  volume_size: 1048576\n", func(t *testing.T, p *Plan) {
			if p.Repository.VolumeSize != 1<<20 {
				t.Errorf("volume size = %d", p.Repository.VolumeSize)
			}
		}},
		{"volume size unit", repo + "  volume_size: 64kib\n", func(t *testing.T, p *Plan) {
			if p.Repository.VolumeSize != 64<<10 {
				t.Errorf("volume size = %d", p.Repository.VolumeSize)
			}
		}},
		{"volume size max", repo + "  volume_size: \"4 GiB\"\n", func(t *testing.T, p *Plan) {
			if p.Repository.VolumeSize != 4<<30 {
				t.Errorf("volume size = %d", p.Repository.VolumeSize)
			}
		}},
		{"scheme case", "repository:\n  url: AZBLOB://c\n  encryption: none\n  replicas: [S3://b]\n", func(t *testing.T, p *Plan) {
			if p.Repository.URL != "azblob://c" || p.Repository.Replicas[0] != "s3://b" {
				t.Errorf("repository = %+v", p.Repository)
			}
		}},
		{"numeric name", repo + "sources:\n  - name: 2024\n    kind: files\n    paths: [/a]\n", func(t *testing.T, p *Plan) {
			if p.Sources[0].Name != "2024" {
				t.Errorf("name = %q", p.Sources[0].Name)
			}
		}},
		{"anchor and alias", repo + "sources:\n  - name: a\n    kind: files\n    paths: [/a]\n    exclude: &ex ['*.tmp', '*.bak']\n  - name: b\n    kind: files\n    paths: [/b]\n    exclude: *ex\n", func(t *testing.T, p *Plan) {
			if !slices.Equal(p.Sources[1].Exclude, []string{"*.tmp", "*.bak"}) {
				t.Errorf("exclude = %q", p.Sources[1].Exclude)
			}
		}},
		{"block list entry line", repo + "sources:\n  -\n    name: a\n    kind: files\n    paths:\n      - /a\n  - {name: b, kind: files, paths: [/b]}\n", func(t *testing.T, p *Plan) {
			if p.Sources[0].Line != 5 || p.Sources[1].Line != 10 {
				t.Errorf("lines = %d, %d", p.Sources[0].Line, p.Sources[1].Line)
			}
		}},
		{"document markers", "%YAML 1.2\n---\n" + repo + "...\n", nil},
		{"complex key", "repository:\n  ? url\n  : s3://b\n  encryption: none\n", nil},
		{"crlf and bom", "\ufeff" + strings.ReplaceAll(repo+"sources:\n  - name: a\n    kind: files\n    paths: [/a]\n", "\n", "\r\n"), func(t *testing.T, p *Plan) {
			if p.Sources[0].Name != "a" || p.Sources[0].Line != 5 {
				t.Errorf("sources = %+v", p.Sources)
			}
		}},
		{"paths cleaned", repo + "sources:\n  - name: a\n    kind: files\n    paths: [/opt//x/../y/]\n", func(t *testing.T, p *Plan) {
			if runtime.GOOS != "windows" && p.Sources[0].Paths[0] != "/opt/y" {
				t.Errorf("paths = %q", p.Sources[0].Paths)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, "hartvault.yaml", tt.text)
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	// Built from a real private key so that the test proves it is never echoed.
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	secretKey := id.String()
	src := func(body string) string { return repo + "sources:\n  - name: a\n    kind: files\n" + body }

	tests := []struct {
		name, text, want string
	}{
		// Decoding: unknown keys and wrong types, with the path of the field.
		{"unknown field", "repository:\n  url: file:///r\n  compresion: zstd\n",
			`hartvault.yaml:3: repository.compresion: unknown field`},
		{"unknown top-level key", repo + "retention: 7d\n",
			`hartvault.yaml:4: retention: unknown field`},
		{"unknown source field", src("    paths: [/a]\n    datadir: /var/lib/pg\n"),
			`hartvault.yaml:8: sources[0].datadir: unknown field`},
		{"field of another kind", src("    paths: [/a]\n    data_dir: /var/lib/pg\n"),
			`hartvault.yaml:8: sources[0].data_dir: field data_dir is not valid for kind files`},
		{"line is not a key", src("    paths: [/a]\n    line: 3\n"),
			`hartvault.yaml:8: sources[0].line: unknown field`},
		{"paths is a string", repo + "sources:\n  - name: a\n    kind: files\n    paths: [/a]\n  - name: b\n    kind: files\n    paths: /b\n",
			`hartvault.yaml:10: sources[1].paths: expected a list of strings, got a string`},
		{"paths item is a list", src("    paths:\n      - /a\n      - [/b]\n"),
			`hartvault.yaml:9: sources[0].paths[1]: expected a string, got a list`},
		{"repository is a number", "repository: 5\n",
			`hartvault.yaml:1: repository: expected a mapping, got an integer`},
		{"repository is a list", "repository:\n  - url: x\n",
			`hartvault.yaml:1: repository: expected a mapping, got a list`},
		{"sources is a mapping", repo + "sources: {a: 1}\n",
			`hartvault.yaml:4: sources: expected a list of mappings, got a mapping`},
		{"source is a string", repo + "sources:\n  - a\n",
			`hartvault.yaml:5: sources[0]: expected a mapping, got a string`},
		{"root is a list", "- a\n",
			`hartvault.yaml:1: expected a mapping, got a list`},
		{"level is a string", repo + "  compression_level: high\n",
			`hartvault.yaml:4: repository.compression_level: expected an integer, got a string`},
		{"name is a boolean", strings.Replace(src("    paths: [/a]\n"), "name: a", "name: true", 1),
			`hartvault.yaml:5: sources[0].name: expected a string, got a boolean (put it in quotes)`},
		{"name is a float", strings.Replace(src("    paths: [/a]\n"), "name: a", "name: 1.10", 1),
			`hartvault.yaml:5: sources[0].name: expected a string, got a decimal number (put it in quotes)`},
		{"url is a mapping", "repository:\n  url: {a: b}\n",
			`hartvault.yaml:2: repository.url: expected a string, got a mapping`},
		{"volume size bad", repo + "  volume_size: 12zz\n",
			`hartvault.yaml:4: repository.volume_size: invalid size "12zz" (want e.g. 256MiB, 1GiB, 1GB or a number of bytes)`},
		{"volume size negative", repo + "  volume_size: -1\n",
			`hartvault.yaml:4: repository.volume_size: invalid size "-1" (want e.g. 256MiB, 1GiB, 1GB or a number of bytes)`},
		{"volume size list", repo + "  volume_size: [1]\n",
			`hartvault.yaml:4: repository.volume_size: expected a size such as 256MiB, got a list`},

		// Syntax errors: a line and goccy's short message, no source excerpt.
		{"unterminated quote", "repository:\n  url: \"file:///r\n",
			`hartvault.yaml:2: could not find end character of double-quoted text`},
		{"duplicate key", "repository:\n  url: file:///r\n  url: file:///s\n",
			`hartvault.yaml:3: mapping key "url" already defined at line 2`},
		{"unclosed flow list", "repository: [\n",
			`hartvault.yaml:1: sequence end token ']' not found`},
		{"two documents", repo + "---\nsources: []\n",
			`hartvault.yaml:4: a plan file holds one YAML document; found a second one`},

		{"unknown alias", "repository: *nope\n",
			`hartvault.yaml:1: could not find alias "nope"`},

		// Anchors, aliases and merge keys are checked like the text they stand for,
		// at the line where they are used.
		{"merged unknown key", "repository:\n  <<: {url: s3://x, bogus: 1}\n  encryption: none\n",
			`hartvault.yaml:2: repository.bogus: unknown field`},
		{"merged from alias", repo + "sources:\n  - &base {name: a, kind: files, paths: [/a], bogus: 1}\n",
			`hartvault.yaml:5: sources[0].bogus: unknown field`},
		{"alias repeats a source", repo + "sources:\n  - &s {name: a, kind: files, paths: [/a]}\n  - *s\n",
			`hartvault.yaml:6: sources[1].name: duplicate source name "a" (first at line 5)`},
		{"alias of wrong type", repo + "sources:\n  - name: a\n    kind: files\n    paths: [/a]\n    exclude: &x {a: 1}\n",
			`hartvault.yaml:8: sources[0].exclude: expected a list of strings, got a mapping`},
		// goccy's strict decoder refuses to override a merged key; its error is placed
		// by token position.
		{"merge override", "repository:\n  url: s3://b\n  encryption: none\nsources:\n  - &base {name: a, kind: files, paths: [/a]}\n  - <<: *base\n    name: b\n",
			`hartvault.yaml:7: sources[1].name: duplicate key "name"`},

		// Required fields point at the enclosing mapping.
		{"empty file", "",
			`hartvault.yaml:1: repository: missing required field`},
		{"missing repository", "sources: []\n",
			`hartvault.yaml:1: repository: missing required field`},
		{"missing url", "repository:\n  passphrase_env: P\n",
			`hartvault.yaml:1: repository.url: missing required field`},
		{"missing url after comments", "# plan\n\nrepository:\n  passphrase_env: P\n",
			`hartvault.yaml:3: repository.url: missing required field`},
		{"empty url", "repository:\n  passphrase_env: P\n  url:\n",
			`hartvault.yaml:3: repository.url: missing required field`},

		// URLs.
		{"unknown scheme", "repository:\n  url: ftp://host/x\n",
			`hartvault.yaml:2: repository.url: unknown scheme "ftp" (want file://, azblob://, s3:// or gs://)`},
		{"no scheme", "repository:\n  url: /var/lib/hartvault\n",
			`hartvault.yaml:2: repository.url: not a URL (want file://, azblob://, s3:// or gs://)`},
		{"windows path", "repository:\n  url: C:\\backups\n",
			`hartvault.yaml:2: repository.url: a Windows path needs a file URL: file:///C:/backups`},
		{"no container", "repository:\n  url: azblob://\n",
			`hartvault.yaml:2: repository.url: azblob URL needs the container name: azblob://CONTAINER`},
		{"no bucket", "repository:\n  url: s3:///prefix\n",
			`hartvault.yaml:2: repository.url: s3 URL needs the bucket name: s3://BUCKET`},
		{"credentials in url", "repository:\n  url: s3://AKIA:hunter2@bucket\n",
			`hartvault.yaml:2: repository.url: URL must not hold a user name or password; give credentials through the storage's environment`},
		{"empty file url", "repository:\n  url: file://\n",
			`hartvault.yaml:2: repository.url: file URL has no path`},

		// Encryption.
		{"no key", "repository:\n  url: s3://b\n",
			`hartvault.yaml:1: repository: no encryption key: set one of passphrase_env, passphrase_file or recipients (or encryption: none)`},
		{"two keys", "repository:\n  url: s3://b\n  passphrase_env: P\n  passphrase_file: /k\n",
			`hartvault.yaml:4: repository.passphrase_file: conflicts with passphrase_env: set only one of passphrase_env, passphrase_file, recipients`},
		{"passphrase and recipients", "repository:\n  url: s3://b\n  passphrase_file: /k\n  recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\n",
			`hartvault.yaml:4: repository.recipients: conflicts with passphrase_file: set only one of passphrase_env, passphrase_file, recipients`},
		{"identity alone", "repository:\n  url: s3://b\n  identity_file: /id\n",
			`hartvault.yaml:3: repository.identity_file: only valid with recipients (recipients encrypt, identity_file decrypts)`},
		{"identity with passphrase", "repository:\n  url: s3://b\n  passphrase_env: P\n  identity_file: /id\n",
			`hartvault.yaml:4: repository.identity_file: only valid with recipients (recipients encrypt, identity_file decrypts)`},
		{"none with passphrase", "repository:\n  url: s3://b\n  encryption: none\n  passphrase_env: P\n",
			`hartvault.yaml:4: repository.passphrase_env: encryption: none conflicts with passphrase_env`},
		{"none with identity", "repository:\n  url: s3://b\n  identity_file: /id\n  encryption: none\n",
			`hartvault.yaml:3: repository.identity_file: encryption: none conflicts with identity_file`},
		{"unknown encryption", "repository:\n  url: s3://b\n  encryption: aes\n",
			`hartvault.yaml:3: repository.encryption: unknown value "aes" (want none, or leave it out to encrypt)`},
		{"bad env name", "repository:\n  url: s3://b\n  passphrase_env: hunter2 is my secret\n",
			`hartvault.yaml:3: repository.passphrase_env: not a valid environment variable name (give the name of the variable that holds the passphrase, not the passphrase)`},
		{"bad recipient", "repository:\n  url: s3://b\n  recipients:\n    - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n    - age1nope\n",
			`hartvault.yaml:5: repository.recipients[1]: not an age X25519 recipient (want age1...)`},
		{"secret key as recipient", "repository:\n  url: s3://b\n  recipients: [" + secretKey + "]\n",
			`hartvault.yaml:3: repository.recipients[0]: this is an age identity (a secret key), not a recipient; keep it in identity_file and list its public key (age1...) here`},

		// Compression, replicas, volume size.
		{"unknown compression", repo + "  compression: lz4\n",
			`hartvault.yaml:4: repository.compression: unknown compression "lz4" (want zstd or none)`},
		{"level too high", repo + "  compression_level: 20\n",
			`hartvault.yaml:4: repository.compression_level: 20 is out of range 1..19`},
		{"level negative", repo + "  compression_level: -1\n",
			`hartvault.yaml:4: repository.compression_level: -1 is out of range 1..19`},
		{"level without compression", repo + "  compression: none\n  compression_level: 5\n",
			`hartvault.yaml:5: repository.compression_level: not valid with compression: none`},
		{"replica equals url", repo + "  replicas:\n    - s3://b\n    - file:///var/lib/hartvault/\n",
			`hartvault.yaml:6: repository.replicas[1]: same as repository.url`},
		{"replica twice", repo + "  replicas: [s3://b, gs://c, s3://b]\n",
			`hartvault.yaml:4: repository.replicas[2]: same as replicas[0]`},
		{"replica bad scheme", repo + "  replicas: [s3://b, http://c]\n",
			`hartvault.yaml:4: repository.replicas[1]: unknown scheme "http" (want file://, azblob://, s3:// or gs://)`},
		{"volume too small", repo + "  volume_size: 1KiB\n",
			`hartvault.yaml:4: repository.volume_size: 1KiB is below the minimum 64KiB`},
		{"volume too large", repo + "  volume_size: 5GB\n",
			`hartvault.yaml:4: repository.volume_size: 5GB is above the maximum 4GiB`},
		{"temp dir tilde", repo + "  temp_dir: ~/spool\n",
			`hartvault.yaml:4: repository.temp_dir: ~ is not expanded; write the full path`},

		// Sources.
		{"unknown kind", repo + "sources:\n  - name: a\n    kind: filez\n    paths: [/a]\n",
			`hartvault.yaml:6: sources[0].kind: unknown kind "filez" (want files, mssql, neo4j, postgres)`},
		{"missing name", repo + "sources:\n  - kind: files\n    paths: [/a]\n",
			`hartvault.yaml:5: sources[0].name: missing required field`},
		{"missing name in second", repo + "sources:\n  - name: a\n    kind: files\n    paths: [/a]\n  -\n    kind: files\n",
			`hartvault.yaml:8: sources[1].name: missing required field`},
		{"bad name", repo + "sources:\n  - name: my source\n    kind: files\n",
			`hartvault.yaml:5: sources[0].name: invalid name "my source" (want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)`},
		{"name too long", repo + "sources:\n  - name: " + strings.Repeat("x", 65) + "\n",
			`hartvault.yaml:5: sources[0].name: invalid name "` + strings.Repeat("x", 65) + `" (want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)`},
		{"missing kind", repo + "sources:\n  - name: a\n    paths: [/a]\n",
			`hartvault.yaml:5: sources[0].kind: missing required field`},
		{"missing paths", repo + "sources:\n  - name: a\n    kind: files\n",
			`hartvault.yaml:5: sources[0].paths: missing required field`},
		{"null paths", src("    paths:\n"),
			`hartvault.yaml:7: sources[0].paths: missing required field`},
		{"empty paths", src("    paths: []\n"),
			`hartvault.yaml:7: sources[0].paths: must list at least one path`},
		{"empty path", src("    paths: [/a, '']\n"),
			`hartvault.yaml:7: sources[0].paths[1]: empty path`},
		{"same base name", src("    paths:\n      - /opt/a/conf\n      - /etc/conf/\n"),
			`hartvault.yaml:9: sources[0].paths[1]: base name "conf" is also that of paths[0] (/opt/a/conf); restore puts each path at TARGET/<base name>, so base names must differ`},
		{"same path twice", src("    paths: [/a/b, /a/./b]\n"),
			`hartvault.yaml:7: sources[0].paths[1]: /a/b is listed twice (also paths[0])`},
		{"bad exclude", src("    paths: [/a]\n    exclude: ['*.tmp', '[a-']\n"),
			`hartvault.yaml:8: sources[0].exclude[1]: bad pattern "[a-"`},
		{"empty exclude", src("    paths: [/a]\n    exclude:\n      - ''\n"),
			`hartvault.yaml:9: sources[0].exclude[0]: empty pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if runtime.GOOS == "windows" && (strings.Contains(tt.want, "/a/b") || strings.Contains(tt.want, "/opt/")) {
				t.Skip("Unix paths in the message")
			}
			got := parseError(t, tt.text)
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			for _, secret := range []string{secretKey, "hunter2"} {
				if strings.Contains(got, secret) {
					t.Errorf("message leaks a secret: %s", got)
				}
			}
		})
	}
}

func TestDuplicateSourceName(t *testing.T) {
	_, err := Load(filepath.Join("testdata", "duplicate_name.yaml"))
	want := filepath.Join("testdata", "duplicate_name.yaml") + `:9: sources[1].name: duplicate source name "assemblies" (first at line 5)`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Line != 9 || pe.Field != "sources[1].name" {
		t.Errorf("got %#v", pe)
	}
}

func TestRelativePaths(t *testing.T) {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load(filepath.Join("testdata", "relative.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Repository
	if want := fileURL(filepath.Join(dir, "repo")); r.URL != want {
		t.Errorf("URL = %q, want %q", r.URL, want)
	}
	if got, _ := r.LocalPath(); got != filepath.Join(dir, "repo") {
		t.Errorf("LocalPath = %q", got)
	}
	if want := filepath.Join(dir, "keys", "passphrase"); r.PassphraseFile != want {
		t.Errorf("PassphraseFile = %q, want %q", r.PassphraseFile, want)
	}
	if want := filepath.Join(dir, "spool"); r.TempDir != want {
		t.Errorf("TempDir = %q, want %q", r.TempDir, want)
	}
	wantReplicas := []string{fileURL(filepath.Join(dir, "mirror")), fileURL(filepath.Join(filepath.Dir(dir), "elsewhere", "mirror"))}
	if !slices.Equal(r.Replicas, wantReplicas) {
		t.Errorf("Replicas = %q, want %q", r.Replicas, wantReplicas)
	}
	wantPaths := []string{filepath.Join(dir, "data"), filepath.Join(dir, "conf", "app.ini"), filepath.Join(filepath.Dir(dir), "shared")}
	if !slices.Equal(p.Sources[0].Paths, wantPaths) {
		t.Errorf("Paths = %q, want %q", p.Sources[0].Paths, wantPaths)
	}
}

func TestRelativeFileURLForms(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hartvault.yaml")
	want := fileURL(filepath.Join(dir, "repo"))
	for _, u := range []string{"file://./repo", "file://repo", "file:repo", "file:./repo", "file:./x/../repo"} {
		p := mustParse(t, file, "repository:\n  url: "+u+"\n  encryption: none\n")
		if p.Repository.URL != want {
			t.Errorf("%s -> %q, want %q", u, p.Repository.URL, want)
		}
	}
}

func TestRecipientsTestdata(t *testing.T) {
	p, err := Load(filepath.Join("testdata", "recipients.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Repository
	if r.URL != "s3://hartvault-backups/prod?region=eu-west-1" || len(r.Recipients) != 1 ||
		r.Compression != "none" || r.VolumeSize != 1<<30 || len(p.Sources) != 0 {
		t.Errorf("plan = %+v", p)
	}
	if _, ok := r.LocalPath(); ok {
		t.Error("LocalPath is true for an s3 URL")
	}
	if runtime.GOOS != "windows" && r.IdentityFile != "/etc/hartvault/identity.txt" {
		t.Errorf("IdentityFile = %q", r.IdentityFile)
	}
}

func TestParseFileURLPath(t *testing.T) {
	tests := []struct {
		rest string // after "file:"
		path string
		abs  bool
	}{
		{"///var/lib/hartvault", "/var/lib/hartvault", true},
		{"/var/lib/hartvault", "/var/lib/hartvault", true},
		{"//localhost/var/x", "/var/x", true},
		{"///C:/backups/hv", "C:/backups/hv", true},
		{"///c:\\backups\\hv", "c:/backups/hv", true},
		{"//D:/hv", "D:/hv", true},
		{"C:/hv", "C:/hv", true},
		{"///C:", "C:/", true},
		{"////server/share/hv", "//server/share/hv", true},
		{"//./repo", "./repo", false},
		{"//repo", "repo", false},
		{"repo", "repo", false},
		{"../repo", "../repo", false},
	}
	for _, tt := range tests {
		p, abs, err := parseFileURLPath(tt.rest)
		if err != nil || p != tt.path || abs != tt.abs {
			t.Errorf("file:%s -> %q, %v, %v; want %q, %v", tt.rest, p, abs, err, tt.path, tt.abs)
		}
	}
	for _, rest := range []string{"", "//"} {
		if _, _, err := parseFileURLPath(rest); err == nil {
			t.Errorf("file:%s: no error", rest)
		}
	}
}

func TestWindowsFileURL(t *testing.T) {
	got, err := NormalizeURL("file:///C:/Backups/hv/", "")
	if runtime.GOOS == "windows" {
		if err != nil || got != "file:///C:/Backups/hv" {
			t.Errorf("got %q, %v", got, err)
		}
		if lp, ok := URLLocalPath(got); !ok || lp != `C:\Backups\hv` {
			t.Errorf("URLLocalPath = %q, %v", lp, ok)
		}
		return
	}
	if err == nil || err.Error() != "drive path C:/Backups/hv/ is only valid on Windows" {
		t.Errorf("got %q, %v", got, err)
	}
	// The path form is OS-independent; only its use is refused here.
	if lp, ok := URLLocalPath("file:///C:/Backups/hv"); !ok || lp != "C:/Backups/hv" {
		t.Errorf("URLLocalPath = %q, %v", lp, ok)
	}
}

func TestFileURLFromPath(t *testing.T) {
	if runtime.GOOS == "windows" {
		if got := fileURL(`C:\x\y`); got != "file:///C:/x/y" {
			t.Errorf("got %q", got)
		}
		return
	}
	if got := fileURL("/x/y"); got != "file:///x/y" {
		t.Errorf("got %q", got)
	}
}

func TestParseDuration(t *testing.T) {
	good := []struct {
		in   string
		want time.Duration
	}{
		{"30s", 30 * time.Second},
		{"90m", 90 * time.Minute},
		{"26h", 26 * time.Hour},
		{"7d", 7 * 24 * time.Hour},
		{"4w", 28 * 24 * time.Hour},
		{"1h30m", 90 * time.Minute},
		{"1d12h", 36 * time.Hour},
		{"1w2d", 9 * 24 * time.Hour},
		{"1.5h", 90 * time.Minute},
		{"500ms", 500 * time.Millisecond},
	}
	for _, tt := range good {
		got, err := ParseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	bad := map[string]string{
		"":          `empty duration (want e.g. 30s, 90m, 26h, 7d, 4w or 1h30m)`,
		"0s":        `duration "0s" must be greater than zero`,
		"0d":        `duration "0d" must be greater than zero`,
		"-5m":       `duration "-5m" must be greater than zero`,
		"30":        `missing unit in duration "30" (want e.g. 30s, 90m, 26h, 7d, 4w or 1h30m)`,
		"5y":        `invalid duration "5y" (want e.g. 30s, 90m, 26h, 7d, 4w or 1h30m)`,
		"1.5d":      `invalid duration "1.5d" (want e.g. 30s, 90m, 26h, 7d, 4w or 1h30m)`,
		"d":         `invalid duration "d" (want e.g. 30s, 90m, 26h, 7d, 4w or 1h30m)`,
		"7 d":       `invalid duration "7 d" (want e.g. 30s, 90m, 26h, 7d, 4w or 1h30m)`,
		"99999999w": `duration "99999999w" is too long`,
	}
	for in, want := range bad {
		if _, err := ParseDuration(in); err == nil || err.Error() != want {
			t.Errorf("ParseDuration(%q) error = %v; want %s", in, err, want)
		}
	}
}

func TestDurationString(t *testing.T) {
	tests := map[time.Duration]string{
		14 * 24 * time.Hour: "2w",
		7 * 24 * time.Hour:  "1w",
		3 * 24 * time.Hour:  "3d",
		36 * time.Hour:      "1d12h",
		26 * time.Hour:      "1d2h",
		12 * time.Hour:      "12h",
		90 * time.Minute:    "1h30m",
		30 * time.Second:    "30s",
		90 * time.Second:    "1m30s",
	}
	for d, want := range tests {
		got := Duration(d).String()
		if got != want {
			t.Errorf("Duration(%v).String() = %q, want %q", d, got, want)
		}
		if back, err := ParseDuration(got); err != nil || back != d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", got, back, err, d)
		}
		if Duration(d).Std() != d {
			t.Errorf("Std(%v) differs", d)
		}
	}
}

func TestParseSize(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"4096", 4096},
		{"100B", 100},
		{"1KB", 1000},
		{"1kb", 1000},
		{"2MB", 2e6},
		{"1GB", 1e9},
		{"1TB", 1e12},
		{"1KiB", 1024},
		{"256MiB", 256 << 20},
		{"256mib", 256 << 20},
		{"1GiB", 1 << 30},
		{"2TiB", 2 << 40},
		{"1.5GiB", 3 << 29},
		{" 64 KiB ", 64 << 10},
	}
	for _, tt := range good {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	bad := map[string]string{
		"":           `invalid size "" (want e.g. 256MiB, 1GiB, 1GB or a number of bytes)`,
		"-1":         `invalid size "-1" (want e.g. 256MiB, 1GiB, 1GB or a number of bytes)`,
		"12zz":       `invalid size "12zz" (want e.g. 256MiB, 1GiB, 1GB or a number of bytes)`,
		"1K":         `invalid size "1K" (want e.g. 256MiB, 1GiB, 1GB or a number of bytes)`,
		"MiB":        `invalid size "MiB" (want e.g. 256MiB, 1GiB, 1GB or a number of bytes)`,
		"1.2.3MB":    `invalid size "1.2.3MB" (want e.g. 256MiB, 1GiB, 1GB or a number of bytes)`,
		"1.5B":       `size "1.5B" is not a whole number of bytes`,
		"9999999TiB": `size "9999999TiB" is too large`,
	}
	for in, want := range bad {
		if _, err := ParseSize(in); err == nil || err.Error() != want {
			t.Errorf("ParseSize(%q) error = %v; want %s", in, err, want)
		}
	}
}

func TestSizeString(t *testing.T) {
	tests := map[Size]string{
		0:         "0B",
		100:       "100B",
		1000:      "1KB",
		1024:      "1KiB",
		256 << 20: "256MiB",
		4 << 30:   "4GiB",
		5e9:       "5GB",
		1 << 40:   "1TiB",
	}
	for s, want := range tests {
		if got := s.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), got, want)
		}
		if back, err := ParseSize(want); err != nil || back != int64(s) {
			t.Errorf("ParseSize(%q) = %d, %v", want, back, err)
		}
	}
}

// The YAML methods must work on their own too, for fields that other packages decode.
func TestUnitsUnmarshalYAML(t *testing.T) {
	var v struct {
		Keep  Duration `yaml:"keep"`
		Every Duration `yaml:"every"`
		Vol   Size     `yaml:"vol"`
		Raw   Size     `yaml:"raw"`
	}
	if err := yaml.Unmarshal([]byte("keep: 4w\nevery: 1d12h\nvol: 512KiB\nraw: 65536\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.Keep.Std() != 28*24*time.Hour || v.Every.Std() != 36*time.Hour || v.Vol != 512<<10 || v.Raw != 65536 {
		t.Errorf("got %+v", v)
	}
	for _, text := range []string{"keep: 0s\n", "keep: 30\n", "vol: -5\n", "vol: 1.5\n", "vol: 3zz\n", "keep: [1]\n"} {
		if err := yaml.Unmarshal([]byte(text), &v); err == nil {
			t.Errorf("%q: no error", text)
		}
	}
	out, err := yaml.Marshal(struct {
		Keep Duration `yaml:"keep"`
		Vol  Size     `yaml:"vol"`
	}{Duration(7 * 24 * time.Hour), 256 << 20})
	if err != nil || string(out) != "keep: 1w\nvol: 256MiB\n" {
		t.Errorf("Marshal = %q, %v", out, err)
	}
}

func mustNode(t *testing.T, text string) ast.Node {
	t.Helper()
	f, err := parser.ParseBytes([]byte(text), 0)
	if err != nil {
		t.Fatal(err)
	}
	return f.Docs[0].Body
}

// The AST walk also checks Duration fields, which the plan does not have yet.
func TestWalkDuration(t *testing.T) {
	type withRetention struct {
		Keep Duration `yaml:"keep"`
	}
	typ := reflect.TypeFor[withRetention]()
	for text, want := range map[string]string{
		"keep: 7d\n":     "",
		"keep: 7\n":      `1: keep: missing unit in duration "7" (want e.g. 30s, 90m, 26h, 7d, 4w or 1h30m)`,
		"keep: {a: 1}\n": `1: keep: expected a duration such as 7d, got a mapping`,
	} {
		node := mustNode(t, text)
		e := newShape().walk(node, typ, "", 1)
		got := ""
		if e != nil {
			got = strings.TrimPrefix(e.Error(), ":")
		}
		if got != want {
			t.Errorf("%q: got %q, want %q", text, got, want)
		}
	}
}

// The kind table decides which source keys are valid; a key that some other kind owns is
// reported against the source's kind.
func TestKindFields(t *testing.T) {
	specs := map[string]kindSpec{
		KindFiles:  {fields: []string{"paths", "exclude"}},
		"postgres": {fields: []string{"data_dir", "port"}},
	}
	if k, ok := checkKindFields([]string{"name", "kind", "paths", "data_dir"}, KindFiles, specs); ok || k != "data_dir" {
		t.Errorf("files with data_dir: %q, %v", k, ok)
	}
	if k, ok := checkKindFields([]string{"name", "kind", "data_dir", "port"}, "postgres", specs); !ok {
		t.Errorf("postgres: rejected %q", k)
	}
	if k, ok := checkKindFields([]string{"kind", "exclude", "name"}, "postgres", specs); ok || k != "exclude" {
		t.Errorf("postgres with exclude: %q, %v", k, ok)
	}
	if got := kindNames(specs); got != "files, postgres" {
		t.Errorf("kindNames = %q", got)
	}
}

// Every YAML field of Source must be common or belong to at least one kind (kinds may
// share a key, such as mode), never both, so a new kind's fields cannot be forgotten in
// the table.
func TestSourceFieldsHaveOneOwner(t *testing.T) {
	owners := map[string]int{}
	common := map[string]bool{}
	for _, f := range commonSourceFields() {
		owners[f]++
		common[f] = true
	}
	for _, spec := range kindSpecs() {
		for _, f := range spec.fields {
			if common[f] {
				t.Errorf("Source field %q is common and also a kind's", f)
			}
			owners[f]++
		}
	}
	for key := range yamlFields(reflect.TypeFor[Source]()) {
		if owners[key] < 1 {
			t.Errorf("Source field %q has no owner in kindSpecs/commonSourceFields", key)
		}
		delete(owners, key)
	}
	for key := range owners {
		t.Errorf("kind table names %q, which Source does not have", key)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "p.yaml", Line: 7, Field: "sources[0].kind", Msg: "m"}, "p.yaml:7: sources[0].kind: m"},
		{Error{File: "p.yaml", Line: 7, Msg: "m"}, "p.yaml:7: m"},
		{Error{File: "p.yaml", Field: "f", Msg: "m"}, "p.yaml: f: m"},
		{Error{File: "p.yaml", Msg: "m"}, "p.yaml: m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(dir)
	var pe *Error
	if !errors.As(err, &pe) || !strings.HasPrefix(err.Error(), dir+": cannot read plan file: ") || pe.Line != 0 {
		t.Errorf("got %v", err)
	}
}

func TestLoadFromDisk(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hartvault.yaml")
	if err := os.WriteFile(path, []byte("repository:\n  url: file://store\n  passphrase_file: pass.txt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Repository.URL != fileURL(filepath.Join(dir, "store")) || p.Repository.PassphraseFile != filepath.Join(dir, "pass.txt") || p.Path != path {
		t.Errorf("got %+v", p)
	}
}

func TestPostgresSource(t *testing.T) {
	head := "repository:\n  url: file:///r\n  encryption: none\nsources:\n  - name: hartonomous\n    kind: postgres\n"
	p, err := Parse("/etc/hv/hartvault.yaml", []byte(head+"    data_dir: pgdata\n    conninfo: \"host=/var/run/postgresql port=5432 user=postgres dbname=postgres\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Source("hartonomous"); s.DataDir != filepath.Join("/etc/hv", "pgdata") || s.Conninfo == "" {
		t.Fatalf("postgres source: %+v", s)
	}
	for _, c := range []struct{ body, want string }{
		{"    conninfo: host=x\n", "hartvault.yaml:5: sources[0].data_dir: missing required field"},
		{"    data_dir: /d\n", "hartvault.yaml:5: sources[0].conninfo: missing required field"},
		{"    data_dir: /d\n    conninfo: host=x password=hunter2\n", "sources[0].conninfo: must not hold a password"},
		{"    data_dir: /d\n    conninfo: postgres://u:hunter2@h/db\n", "sources[0].conninfo: must not hold a password"},
		{"    data_dir: /d\n    conninfo: host=x\n    paths: [/a]\n", "sources[0].paths: field paths is not valid for kind postgres"},
	} {
		_, err := Parse("hartvault.yaml", []byte(head+c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.body, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error repeats the password: %v", err)
		}
	}
}
