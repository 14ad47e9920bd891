// Package workers runs short functions on goroutines that stay for the
// next function while work keeps coming: the SIP front end's REGISTER
// workers (sipvm's udpFront).
//
// A goroutine started per request begins with a small stack, and a
// request handler that goes deep (a SIP registrar writing to the ring)
// pays to grow it on every request. A
// Pool's goroutines keep the stacks the first functions grew, so the
// functions after them run without growing anything. A function that
// finds no goroutine idle starts one, so a Pool never queues work and
// needs no size; a goroutine idle for the Pool's idle time ends.
package workers

import (
	"sync"
	"time"
)

// Pool runs functions on its goroutines. Stop ends them.
type Pool struct {
	idle time.Duration
	jobs chan func() // unbuffered: a send succeeds only to an idle goroutine

	mu      sync.RWMutex
	stopped bool
	quit    chan struct{}
	wg      sync.WaitGroup
}

// New returns a Pool whose goroutines end after idle without work.
func New(idle time.Duration) *Pool {
	return &Pool{idle: idle, jobs: make(chan func()), quit: make(chan struct{})}
}

// Do runs f on one of the Pool's goroutines and reports true. Once Stop
// has begun it starts no goroutine: f runs only if an idle one takes it,
// else Do reports false without running f.
func (p *Pool) Do(f func()) bool {
	select {
	case p.jobs <- f:
		return true
	default:
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.stopped {
		return false
	}
	p.wg.Go(func() {
		f()
		t := time.NewTimer(p.idle)
		defer t.Stop()
		for {
			select {
			case f := <-p.jobs:
				f()
				t.Reset(p.idle)
			case <-t.C:
				return
			case <-p.quit:
				return
			}
		}
	})
	return true
}

// Stop makes Do refuse work and waits for the functions running to
// return and the goroutines to end. Stop may be called more than once.
func (p *Pool) Stop() {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.quit)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
