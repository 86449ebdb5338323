package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/hartonomous/hartvault/internal/repo"
)

// Webhook events.
const (
	EventBackupFailed  = "backup_failed"
	EventAlertRaised   = "alert_raised"
	EventAlertCleared  = "alert_cleared"
	EventStreamStopped = "stream_stopped"
	EventPruneFailed   = "prune_failed"
)

// Event is the JSON body POSTed to the webhook.
type Event struct {
	Event   string    `json:"event"`
	Source  string    `json:"source"`
	Type    string    `json:"type,omitempty"`
	Alert   string    `json:"alert,omitempty"` // stale, failed, slow (alert events)
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
	Since   time.Time `json:"since,omitzero"`    // when the alert started to apply
	Attempt int       `json:"attempt,omitempty"` // failures in a row (backup_failed)
	RetryAt time.Time `json:"retry_at,omitzero"` // the next attempt (backup_failed, stream_stopped)
	Host    string    `json:"host"`
}

// NotifierConfig configures a Notifier.
type NotifierConfig struct {
	URL   string
	Clock Clock
	Log   *slog.Logger
	// Client posts the events (default: a client with a 10 s timeout).
	Client *http.Client
	// Attempts per event (default 4) and the first wait between them (default 1s,
	// doubling).
	Attempts int
	Backoff  time.Duration
	// Queue is how many events may wait (default 256); beyond it new ones are dropped
	// and logged: notifying never blocks the scheduler.
	Queue int
	// Drain is how long pending events are still delivered once Run's ctx ends
	// (default 5s).
	Drain time.Duration
	// Failed is called for each event given up on (a metric).
	Failed func()
}

// Notifier delivers events to a webhook in the background, in order, each retried
// a few times.
type Notifier struct {
	cfg   NotifierConfig
	queue chan Event
	host  string
}

// NewNotifier makes a notifier; Run delivers what Notify queues.
func NewNotifier(cfg NotifierConfig) *Notifier {
	if cfg.Clock == nil {
		cfg.Clock = RealClock()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 4
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 256
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 5 * time.Second
	}
	host, _ := os.Hostname()
	return &Notifier{cfg: cfg, queue: make(chan Event, cfg.Queue), host: host}
}

// Notify queues e without waiting; it reports whether e was queued.
func (n *Notifier) Notify(e Event) bool {
	if e.Host == "" {
		e.Host = n.host
	}
	select {
	case n.queue <- e:
		return true
	default:
		n.cfg.Log.Error("webhook: queue full: event dropped", "event", e.Event, "source", e.Source)
		if n.cfg.Failed != nil {
			n.cfg.Failed()
		}
		return false
	}
}

// Run delivers queued events until ctx ends, then what is still queued for at most
// Drain (a delivery in progress also gets until then).
func (n *Notifier) Run(ctx context.Context) {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			sleep(n.cfg.Clock, n.cfg.Drain, dctx.Done())
			cancel()
		case <-dctx.Done():
		}
	}()
	for {
		select { // what is queued goes first
		case e := <-n.queue:
			n.deliver(dctx, e)
			continue
		default:
		}
		select {
		case e := <-n.queue:
			n.deliver(dctx, e)
		case <-ctx.Done():
			for dctx.Err() == nil {
				select {
				case e := <-n.queue:
					n.deliver(dctx, e)
				default:
					return
				}
			}
			return
		}
	}
}

func (n *Notifier) deliver(ctx context.Context, e Event) {
	body, err := json.Marshal(e)
	if err != nil {
		n.cfg.Log.Error("webhook: cannot encode event", "err", err)
		return
	}
	wait := n.cfg.Backoff
	var last error
	for attempt := 1; attempt <= n.cfg.Attempts; attempt++ {
		if last = n.post(ctx, body); last == nil {
			n.cfg.Log.Debug("webhook: delivered", "event", e.Event, "source", e.Source)
			return
		}
		if attempt == n.cfg.Attempts {
			break
		}
		n.cfg.Log.Warn("webhook: delivery failed: retrying", "event", e.Event, "attempt", attempt, "in", wait, "err", last)
		done := ctx.Done()
		if !sleep(n.cfg.Clock, wait, done) {
			break
		}
		wait *= 2
	}
	n.cfg.Log.Error("webhook: event not delivered", "event", e.Event, "source", e.Source, "err", last)
	if n.cfg.Failed != nil {
		n.cfg.Failed()
	}
}

func (n *Notifier) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hartvault-agent")
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		// The URL may carry a token (chat webhooks do): report the cause without it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post to webhook: %s", scrub(err.Error()))
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// scrub keeps credentials out of what the agent reports (errors may quote a URL).
func scrub(s string) string { return repo.ScrubError(s) }
