package cli

import (
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/hartonomous/hartvault/internal/engine"
)

// progress shows a byte progress bar on a terminal; piped output gets none.
type progress struct {
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

func (a *app) progress(desc string) *progress {
	p := &progress{}
	if a.quiet || !a.env.IsTerminal {
		return p
	}
	p.bar = progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(a.env.Stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	return p
}

var _ engine.Progress = (*progress)(nil)

func (p *progress) SetTotal(n int64) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	p.bar.ChangeMax64(n)
	p.mu.Unlock()
}

func (p *progress) Add(n int64) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	p.bar.Add64(n)
	p.mu.Unlock()
}

func (p *progress) Done() {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	p.bar.Finish()
	p.mu.Unlock()
}
