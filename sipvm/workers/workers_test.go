package workers

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Stop waits for the functions running, and Do refuses work after it.
func TestStop(t *testing.T) {
	p := New(time.Minute)
	release := make(chan struct{})
	var ran atomic.Int32
	for range 50 {
		if !p.Do(func() { <-release; ran.Add(1) }) {
			t.Fatal("Do refused work before Stop")
		}
	}
	stopped := make(chan struct{})
	go func() { p.Stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Stop returned while functions were running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-stopped
	if got := ran.Load(); got != 50 {
		t.Errorf("%d functions ran, want 50", got)
	}
	if p.Do(func() { t.Error("ran after Stop") }) {
		t.Error("Do took work after Stop")
	}
	p.Stop() // again: nothing to do
}

// An idle goroutine takes the next function rather than a new goroutine.
func TestReused(t *testing.T) {
	p := New(time.Minute)
	defer p.Stop()
	done := make(chan struct{})
	p.Do(func() { close(done) })
	<-done
	// The goroutine is idle, or about to be: wait until it takes a function
	// sent only to an idle goroutine.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		select {
		case p.jobs <- func() {}:
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no goroutine waited for the next function within 10 s")
		}
	}
}

// A goroutine idle for the idle time ends.
func TestIdleEnds(t *testing.T) {
	p := New(time.Millisecond)
	defer p.Stop()
	done := make(chan struct{})
	p.Do(func() { close(done) })
	<-done
	ended := make(chan struct{})
	go func() { p.wg.Wait(); close(ended) }()
	<-ended // without work, the goroutine ends before Stop
}
