// Command voicering runs and uses a voicering peer-to-peer voicemail and
// media store. See README.md, or run voicering --help.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp()
	if err := app.RunContext(ctx, flagsFirst(app, os.Args)); err != nil {
		fmt.Fprintln(os.Stderr, "voicering:", err)
		os.Exit(exitCode(err))
	}
}
