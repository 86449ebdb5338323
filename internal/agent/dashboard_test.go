package agent

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDashboardInChromium renders the dashboard of a sample report in headless
// Chromium: each source, its alert badges, the WAL band, backups and failures
// are drawn, and a screenshot is saved under the test's temp dir.
func TestDashboardInChromium(t *testing.T) {
	chromium := "/usr/bin/chromium"
	if p, err := exec.LookPath("chromium"); err == nil {
		chromium = p
	} else if _, err := os.Stat(chromium); err != nil {
		t.Fatal("chromium not found: run scripts/test.sh (it installs the Debian packages chromium and chromium-driver), or install them")
	}
	now := time.Now().Truncate(time.Second)
	a := newHTTPAgent(t, now)
	a.mu.Lock()
	a.report = sampleReport(now)
	a.mu.Unlock()
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	flags := func() []string {
		return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
			"--disable-sync", "--disable-quic", "--no-first-run", "--user-data-dir=" + t.TempDir()}
	}
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, chromium, args...).Output()
		if err != nil {
			t.Fatalf("chromium %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	dom := run(append(flags(), "--dump-dom", srv.URL+"/")...)
	for _, want := range []string{
		`data-source="hartonomous"`, `data-source="assemblies"`,
		`class="badge failed"`, `data-alert="failed"`, `>failed full<`, `class="badge running"`, `class="badge ok"`,
		`class="wal"`, `class="full"`, `class="diff"`, `class="fail"`, `class="window-line"`, `class="running"`,
		"Restorable to any instant from", "scan: permission denied", "azblob://offsite", "1 alert",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the dashboard lacks %s", want)
		}
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	run(append(flags(), "--screenshot="+shot, "--window-size=1280,900", srv.URL+"/")...)
	if info, err := os.Stat(shot); err != nil || info.Size() < 10<<10 {
		t.Fatalf("screenshot: %v", err)
	}
	if dst := os.Getenv("HARTVAULT_DASHBOARD_SCREENSHOT"); dst != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(dst, b, 0o644)
	}
}
