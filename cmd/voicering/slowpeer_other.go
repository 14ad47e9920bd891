//go:build !unix

package main

import (
	"context"
	"time"

	"github.com/voicering/voicering/sipvm/ringpeer"
)

// toggleAnswerDelay: without SIGUSR1/2 a slow peer stays slow.
func toggleAnswerDelay(context.Context, *ringpeer.Peer, time.Duration, interface{ Info(string, ...any) }) func() {
	return func() {}
}
