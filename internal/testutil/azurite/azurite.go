// Package azurite runs Azurite's blob service (the Azure Storage emulator) for
// tests. Start it with Start; it stops when the test ends.
package azurite

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/hartonomous/hartvault/internal/testutil/proc"
)

// Account and Key are Azurite's well-known development account.
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Version is the Azurite release scripts/tools.sh installs.
const Version = "3.37.0"

// Server is a running Azurite blob service on 127.0.0.1.
type Server struct {
	Port int

	cmd    *exec.Cmd
	exited chan struct{}
	out    *proc.Output
	seq    atomic.Int64
}

// Start runs azurite-blob on a free port with its data in a temp directory,
// waits until it accepts connections, and stops it when tb ends. The binary
// is $HARTVAULT_AZURITE_BIN, else <module root>/.tools/node_modules/.bin/
// azurite-blob, else azurite-blob on PATH. Without one the test fails: a
// skipped storage test would pass CI while testing nothing.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := findBinary()
	if bin == "" {
		tb.Fatalf("azurite not installed: run scripts/test.sh, or npm install --prefix .tools azurite@%s", Version)
	}
	dir := tb.TempDir() // registered before our cleanup, so removed after Azurite stops
	var lastErr error
	for try := 0; try < 3; try++ { // another process can take the port between probe and start
		s, err := start(bin, dir)
		if err == nil {
			tb.Cleanup(s.stop)
			return s
		}
		lastErr = err
	}
	tb.Fatalf("azurite: %v", lastErr)
	return nil
}

func findBinary() string {
	if b := os.Getenv("HARTVAULT_AZURITE_BIN"); b != "" {
		return b
	}
	if root := moduleRoot(); root != "" {
		b := filepath.Join(root, ".tools", "node_modules", ".bin", "azurite-blob")
		if _, err := os.Stat(b); err == nil {
			return b
		}
	}
	if b, err := exec.LookPath("azurite-blob"); err == nil {
		return b
	}
	return ""
}

func moduleRoot() string {
	d, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			return ""
		}
		d = p
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(bin, dir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Port: port, exited: make(chan struct{}), out: &proc.Output{Limit: 64 << 10}}
	s.cmd = exec.Command(bin,
		"--skipApiVersionCheck", "--loose", "--disableTelemetry",
		"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
		"--location", dir, "--silent")
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	proc.SetGroup(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr(), time.Second)
		if err == nil {
			_ = c.Close()
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("%s exited before accepting connections on port %d: %s", bin, port, s.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s did not accept connections on port %d within 30s: %s", bin, port, s.out.String())
		}
	}
}

func (s *Server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

func (s *Server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	proc.Terminate(s.cmd)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		proc.Kill(s.cmd)
		<-s.exited
	}
}

// BlobEndpoint is the service URL, http://127.0.0.1:PORT/devstoreaccount1.
func (s *Server) BlobEndpoint() string {
	return "http://" + s.addr() + "/" + Account
}

// ConnectionString is the full connection string for the emulator (the SDK
// does not accept UseDevelopmentStorage=true with a custom port).
func (s *Server) ConnectionString() string {
	return "DefaultEndpointsProtocol=http;AccountName=" + Account + ";AccountKey=" + Key +
		";BlobEndpoint=" + s.BlobEndpoint() + ";"
}

// Env returns the environment assignments that point a child process's
// azblob:// URLs at this server; append them to os.Environ(). Variables that
// gocloud would prefer over the connection string are emptied.
func (s *Server) Env() []string {
	return []string{
		"AZURE_STORAGE_CONNECTION_STRING=" + s.ConnectionString(),
		"AZURE_STORAGE_ACCOUNT=",
		"AZURE_STORAGE_KEY=",
		"AZURE_STORAGE_SAS_TOKEN=",
		"AZURE_STORAGE_DOMAIN=",
		"AZURE_STORAGE_PROTOCOL=",
		"AZURE_STORAGE_IS_LOCAL_EMULATOR=",
		"AZURE_STORAGE_IS_CDN=",
	}
}

// Setenv points azblob:// URLs opened by this test process at the server, for
// the duration of tb. Like tb.Setenv, it cannot be used in parallel tests.
func (s *Server) Setenv(tb testing.TB) {
	tb.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		tb.Setenv(k, v)
	}
}

// Container creates a new container and returns its URL, "azblob://NAME".
// NAME is name made valid for Azure (lower case, letters, digits and
// hyphens) with a sequence number appended, so every call gets its own
// container even with the same name (t.Name() is fine).
func (s *Server) Container(tb testing.TB, name string) string {
	tb.Helper()
	full := containerName(name, s.seq.Add(1))
	client, err := azblob.NewClientFromConnectionString(s.ConnectionString(), nil)
	if err != nil {
		tb.Fatalf("azurite: client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.CreateContainer(ctx, full, nil); err != nil {
		tb.Fatalf("azurite: create container %q: %v", full, err)
	}
	return "azblob://" + full
}

// containerName follows Azure's rules: 3-63 characters of [a-z0-9-], starting
// and ending with a letter or digit, no "--".
func containerName(name string, seq int64) string {
	var b strings.Builder
	dash := true // suppresses leading and doubled hyphens
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	suffix := "-" + strconv.FormatInt(seq, 10)
	base := strings.TrimRight(b.String(), "-")
	if base == "" {
		base = "c"
	}
	if limit := 63 - len(suffix); len(base) > limit {
		base = strings.TrimRight(base[:limit], "-")
	}
	return base + suffix
}
