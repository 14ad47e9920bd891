//go:build !linux

package bench

import (
	"syscall"
	"time"
)

// childAttr: outside Linux there is no parent-death signal; Close and
// context cancellation still kill every peer.
func childAttr() *syscall.SysProcAttr { return nil }

// cpuTime is not known outside Linux: the benchmark does not wait for an
// idle ring there.
func cpuTime(int) (time.Duration, bool) { return 0, false }
