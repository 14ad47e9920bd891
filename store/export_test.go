package store

import (
	"context"
	"time"
)

// SetLingerClock replaces the clock a Coalescer times arrivals with and
// the wait its linger takes.
func SetLingerClock(c *Coalescer, now func() time.Time, wait func(context.Context, time.Duration)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now, c.wait = now, wait
}
