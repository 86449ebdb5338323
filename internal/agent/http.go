package agent

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The dashboard: plain HTML, CSS and JavaScript embedded in the binary (no CDN).
//
//go:embed web
var webFiles embed.FS

// statusPlaceholder in index.html is replaced by the newest report, so the page
// shows it at once and then refreshes from /api/status.
const statusPlaceholder = "<!--HARTVAULT-STATUS-->"

// Handler serves /metrics, /healthz, /api/status and the dashboard at /.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /api/status", a.apiStatus)
	static, _ := fs.Sub(webFiles, "web")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { a.index(w, static) })
	return mux
}

// Serve serves Handler on ln until ctx ends, then shuts the server down.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("agent HTTP server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("agent HTTP server on %s: %w", ln.Addr(), err)
	}
	return nil
}

type health struct {
	Status          string    `json:"status"`
	Started         time.Time `json:"started"`
	StatusEvaluated time.Time `json:"status_evaluated,omitzero"`
	StatusError     string    `json:"status_error,omitempty"`
	Running         []string  `json:"running"`
	Alerts          int       `json:"alerts"`
}

func (a *Agent) healthz(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	h := health{Status: "ok", Started: a.started, StatusEvaluated: a.reportAt, Running: []string{}}
	if a.reportErr != nil {
		h.StatusError = repoError(a.reportErr)
	}
	if a.report != nil {
		h.Alerts = len(a.report.Alerts)
	}
	a.mu.Unlock()
	for _, j := range a.Running() {
		h.Running = append(h.Running, j.Source+" "+j.Type)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(h)
}

func (a *Agent) apiStatus(w http.ResponseWriter, _ *http.Request) {
	rep, err := a.Status()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if rep == nil {
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusServiceUnavailable)
		msg := "status not evaluated yet"
		if err != nil {
			msg = "status evaluation failed: " + repoError(err)
		}
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write(buf.Bytes())
}

func (a *Agent) index(w http.ResponseWriter, static fs.FS) {
	page, err := fs.ReadFile(static, "index.html")
	if err != nil {
		http.Error(w, "dashboard missing from this build", http.StatusInternalServerError)
		return
	}
	initial := "null"
	if rep, _ := a.Status(); rep != nil {
		// encoding/json escapes <, > and &: the JSON cannot end the script element.
		if b, err := json.Marshal(rep); err == nil {
			initial = string(b)
		}
	}
	out := strings.Replace(string(page), statusPlaceholder,
		`<script id="initial-status" type="application/json">`+initial+`</script>`, 1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(out))
}
