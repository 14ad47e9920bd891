//go:build unix

package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/voicering/voicering/sipvm/ringpeer"
)

// toggleAnswerDelay lets a benchmark switch a slow peer (--answer-delay)
// between slow and healthy without restarting it: SIGUSR2 answers at
// once, SIGUSR1 with the delay again. It returns a function that stops
// listening and waits.
func toggleAnswerDelay(ctx context.Context, p *ringpeer.Peer, d time.Duration, log interface{ Info(string, ...any) }) (stop func()) {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sig:
				on := s == syscall.SIGUSR1
				if on {
					p.SetAnswerDelay(d)
				} else {
					p.SetAnswerDelay(0)
				}
				log.Info("answer delay", "on", on, "delay", d)
			}
		}
	})
	return func() {
		signal.Stop(sig)
		cancel()
		wg.Wait()
	}
}
