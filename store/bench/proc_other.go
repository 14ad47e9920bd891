//go:build !linux

package bench

import (
	"errors"
	"syscall"
	"time"
)

// childAttr: outside Linux there is no parent-death signal; Close and
// context cancellation still kill every peer.
func childAttr() *syscall.SysProcAttr { return nil }

// cpuTime is not known outside Linux: the benchmark does not wait for an
// idle ring there.
func cpuTime(int) (time.Duration, bool) { return 0, false }

// setSlow: outside Linux the benchmark does not signal its peers.
func setSlow(n *node, on bool) error {
	return errors.New("switching a slow peer needs Linux")
}
