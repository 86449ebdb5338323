// Command hartvault backs up and restores databases and file sets.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/hartonomous/hartvault/internal/cli"
)

func main() {
	// A signal cancels the context: work in flight is abandoned cleanly and nothing
	// half-written becomes visible.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// HARTVAULT_CPUPROFILE / HARTVAULT_MEMPROFILE name files for pprof profiles, for
	// the benchmarks' "what bounds it" questions.
	if p := os.Getenv("HARTVAULT_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
			defer f.Close()
		}
	}
	code := cli.Main(ctx, os.Args[1:], cli.DefaultEnv())
	stop()
	pprof.StopCPUProfile()
	if p := os.Getenv("HARTVAULT_MEMPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	os.Exit(code)
}
