// Package neo4jtest runs a real Neo4j 5.26 Community server for tests: the launcher in
// tools/neo4j-harness (built by scripts/neo4j-harness.sh into .tools/neo4j-harness)
// starts it in-process on a free port and prints its Bolt URI. Auth is off.
package neo4jtest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/testutil/proc"
)

// Launcher is the launcher's main class.
const Launcher = "hartvault.neo4jharness.Launcher"

// BuildHint is what to run when the launcher is missing.
const BuildHint = "run scripts/neo4j-harness.sh (needs java 17 and mvn; it builds tools/neo4j-harness into .tools/neo4j-harness)"

// Server is a running Neo4j.
type Server struct {
	// URI is the Bolt URI, bolt://127.0.0.1:PORT.
	URI string
	// Home is the server's NEO4J_HOME (StartHome only); its data is in Home/data.
	Home string

	tools   Tools
	control string // host:port of the launcher's control socket (StartHome only)
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	exited  chan struct{}
	out     *proc.Output
}

// Tools locates the built launcher.
type Tools struct {
	Java      string // the java binary
	Jar       string // launcher.jar
	ClassPath string // neo4j-harness's runtime class path (OS list separator)
}

// ClassPathWithLauncher is the class path that runs the launcher and Neo4j's own tools
// (org.neo4j.cli.AdminTool is neo4j-admin).
func (t Tools) ClassPathWithLauncher() string {
	return t.Jar + string(os.PathListSeparator) + t.ClassPath
}

// Find locates the launcher: $HARTVAULT_NEO4J_HARNESS (a directory), else
// <module root>/.tools/neo4j-harness; and java: $JAVA_HOME/bin/java, else PATH.
func Find() (Tools, error) {
	dir := os.Getenv("HARTVAULT_NEO4J_HARNESS")
	if dir == "" {
		root := moduleRoot()
		if root == "" {
			return Tools{}, fmt.Errorf("cannot find the module root from the working directory: %s", BuildHint)
		}
		dir = filepath.Join(root, ".tools", "neo4j-harness")
	}
	jar := filepath.Join(dir, "launcher.jar")
	cpRaw, err := os.ReadFile(filepath.Join(dir, "classpath.txt"))
	if err != nil {
		return Tools{}, fmt.Errorf("the Neo4j test launcher is not built (%v): %s", err, BuildHint)
	}
	if _, err := os.Stat(jar); err != nil {
		return Tools{}, fmt.Errorf("the Neo4j test launcher is not built (%v): %s", err, BuildHint)
	}
	cp := strings.TrimSpace(string(cpRaw)) // Maven wrote it with this OS's list separator
	java := "java"
	if jh := os.Getenv("JAVA_HOME"); jh != "" {
		java = filepath.Join(jh, "bin", "java")
	}
	if p, err := exec.LookPath(java); err == nil {
		java = p
	} else {
		return Tools{}, fmt.Errorf("java not found (%v): install a JDK 17 and %s", err, BuildHint)
	}
	return Tools{Java: java, Jar: jar, ClassPath: cp}, nil
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

// Start runs a fresh in-process server of neo4j-harness (Neo4jBuilders.newInProcessBuilder)
// in a temporary directory, waits for its Bolt URI and stops it when tb ends. Without a
// built launcher the test fails, naming scripts/neo4j-harness.sh: a skipped test would
// pass CI while testing nothing.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, "--work", tb.TempDir())
}

// StartHome runs a server whose NEO4J_HOME is home (created if missing), which can be
// stopped and started without ending the launcher (see Command), as neo4j-admin's dump
// and load need.
func StartHome(tb testing.TB, home string) *Server {
	tb.Helper()
	s := start(tb, "--home", home)
	s.Home = home
	return s
}

// StartN starts n fresh servers at once (their start-up overlaps) and returns them
// when all are up.
func StartN(tb testing.TB, n int) []*Server {
	tb.Helper()
	servers := make([]*Server, n)
	readies := make([]func() *Server, n)
	for i := range servers {
		readies[i] = launch(tb, "--work", tb.TempDir())
	}
	for i, ready := range readies {
		servers[i] = ready()
	}
	return servers
}

func start(tb testing.TB, flag, dir string) *Server {
	return launch(tb, flag, dir)()
}

// launch starts the launcher and returns a function that waits for its Bolt URI.
func launch(tb testing.TB, flag, dir string) func() *Server {
	tools, err := Find()
	if err != nil {
		tb.Fatalf("neo4j: %v", err)
	}
	s := &Server{tools: tools, exited: make(chan struct{}), out: &proc.Output{}}
	// Its own temp dir: the server writes log4j configs there that it never removes.
	s.cmd = exec.Command(tools.Java, "-Xmx768m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.io.tmpdir="+tb.TempDir(),
		"-cp", tools.ClassPathWithLauncher(), Launcher, "serve", flag, dir)
	s.cmd.Stderr = s.out
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("neo4j: %v", err)
	}
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		tb.Fatalf("neo4j: %v", err)
	}
	proc.SetGroup(s.cmd)
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("neo4j: start %s: %v", tools.Java, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	tb.Cleanup(s.stop)

	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "CONTROL "):
				s.control = strings.TrimSpace(strings.TrimPrefix(line, "CONTROL "))
			case strings.HasPrefix(line, "BOLT ") && !signalled:
				s.URI = strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(line, "BOLT ")), "/")
				signalled = true
				close(ready)
			default:
				_, _ = s.out.Write([]byte(line + "\n"))
			}
		}
	}()
	t0 := time.Now()
	return func() *Server {
		tb.Helper()
		select {
		case <-ready:
			tb.Logf("neo4j: %s up in %s", s.URI, time.Since(t0).Round(100*time.Millisecond))
			return s
		case <-s.exited:
			tb.Fatalf("neo4j: the launcher exited before printing its Bolt URI: %s", s.out.String())
		case <-time.After(3 * time.Minute):
			tb.Fatalf("neo4j: no Bolt URI within 3 minutes: %s", s.out.String())
		}
		return nil
	}
}

func (s *Server) stop() {
	_ = s.stdin.Close() // the launcher shuts Neo4j down when its stdin closes
	select {
	case <-s.exited:
		return
	case <-time.After(3 * time.Second):
	}
	// Test data is thrown away: no need to wait for a clean shutdown.
	proc.Kill(s.cmd)
	<-s.exited
}

// Command returns a command line (for a plan's stop_command or start_command) that
// stops or starts the DBMS of a StartHome server; op is "stop" or "start". The
// command exits 0 once the DBMS is down, or up and available.
func (s *Server) Command(op string) string {
	if s.control == "" {
		panic("neo4jtest: Command needs a server started with StartHome")
	}
	return fmt.Sprintf("%s -cp %s %s control %s %s", quote(s.tools.Java), quote(s.tools.Jar), Launcher, s.control, op)
}

// AdminScript writes Home/bin/neo4j-admin, a shell script that runs neo4j-admin
// (org.neo4j.cli.AdminTool from the harness's class path) for this server's home, and
// returns its path. Unix only: it is a sh script.
func (s *Server) AdminScript(tb testing.TB) string {
	tb.Helper()
	if s.Home == "" {
		tb.Fatalf("neo4jtest: AdminScript needs a server started with StartHome")
	}
	bin := filepath.Join(s.Home, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(bin, "neo4j-admin")
	script := fmt.Sprintf("#!/bin/sh\n# neo4j-admin for tests: Neo4j's AdminTool from neo4j-harness's class path\n"+
		"NEO4J_HOME=%s; NEO4J_CONF=%s; export NEO4J_HOME NEO4J_CONF\n"+
		"exec %s -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp %s org.neo4j.cli.AdminTool \"$@\"\n",
		quote(s.Home), quote(filepath.Join(s.Home, "conf")), quote(s.tools.Java), quote(s.tools.ClassPathWithLauncher()))
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Output is what the launcher printed besides its URI lines (for failure messages).
func (s *Server) Output() string { return s.out.String() }

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
