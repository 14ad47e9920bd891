package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/voicering/voicering/sipvm"
)

func userCommand() *cli.Command {
	common := func(extra ...cli.Flag) []cli.Flag {
		return append([]cli.Flag{domainFlag(), peerFlag(), caFlag(), identityFlag(), logLevelFlag(), timeoutFlag()}, extra...)
	}
	return &cli.Command{
		Name:  "user",
		Usage: "manage the SIP accounts kept on the ring (add, rm, ls)",
		Description: "An account is sip:USER@DOMAIN. The ring stores its digest HA1 values (MD5 and SHA-256),\n" +
			"never the password. Whoever the ring admits may manage accounts: in a closed ring, holders of\n" +
			"a certificate from the ring's CA (--identity); in the demo, the local operator.",
		Subcommands: []*cli.Command{
			{
				Name: "add", Usage: "create or replace an account", ArgsUsage: "USER",
				Flags: common(
					&cli.StringFlag{Name: "password", Usage: "the account's `PASSWORD` (visible to other local users in the process list: prefer --password-stdin)"},
					&cli.BoolFlag{Name: "password-stdin", Usage: "read the password from the first line of stdin"},
				),
				Action: runUserAdd,
			},
			{Name: "rm", Usage: "remove an account and its registrations", ArgsUsage: "USER", Flags: common(), Action: runUserRm},
			{Name: "ls", Usage: "list the domain's accounts", Flags: common(), Action: runUserLs},
		},
	}
}

func oneUser(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usageError{fmt.Errorf("user %s takes one USER name, got %d arguments", c.Command.Name, c.NArg())}
	}
	u := c.Args().First()
	if err := sipvm.CheckName("user", u); err != nil {
		return "", usageError{err}
	}
	return u, nil
}

// userAccounts returns the ring's SIP accounts through a client session;
// the caller closes the session.
func userAccounts(c *cli.Context) (*sipvm.Accounts, *session, error) {
	if err := sipvm.CheckName("domain", c.String("domain")); err != nil {
		return nil, nil, usageError{err}
	}
	s, err := openSession(c)
	if err != nil {
		return nil, nil, err
	}
	return sipvm.NewAccounts(s.Records()), s, nil
}

func runUserAdd(c *cli.Context) error {
	user, err := oneUser(c)
	if err != nil {
		return err
	}
	pw := c.String("password")
	switch {
	case c.Bool("password-stdin") && pw != "":
		return usageError{errors.New("give --password or --password-stdin, not both")}
	case c.Bool("password-stdin"):
		line, err := bufio.NewReader(c.App.Reader).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read the password from stdin: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		return usageError{errors.New("no password: give --password PASSWORD or --password-stdin")}
	}
	acc, sess, err := userAccounts(c)
	if err != nil {
		return err
	}
	defer sess.Close()
	if err := acc.Add(sess.ctx, user, c.String("domain"), pw); err != nil {
		return unreachableHint(err)
	}
	fmt.Fprintf(out(c), "added %s\n", sipvm.AOR(user, c.String("domain")))
	return nil
}

func runUserRm(c *cli.Context) error {
	user, err := oneUser(c)
	if err != nil {
		return err
	}
	acc, sess, err := userAccounts(c)
	if err != nil {
		return err
	}
	defer sess.Close()
	if err := acc.Remove(sess.ctx, user, c.String("domain")); err != nil {
		if errors.Is(err, sipvm.ErrNoAccount) {
			return notFoundError{fmt.Errorf("no account %s (see voicering user ls --domain %s)", sipvm.AOR(user, c.String("domain")), c.String("domain"))}
		}
		return unreachableHint(err)
	}
	fmt.Fprintf(out(c), "removed %s\n", sipvm.AOR(user, c.String("domain")))
	return nil
}

func runUserLs(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("user ls takes no arguments, got %q", c.Args().Slice())}
	}
	acc, sess, err := userAccounts(c)
	if err != nil {
		return err
	}
	defer sess.Close()
	users, err := acc.List(sess.ctx, c.String("domain"))
	if err != nil {
		return unreachableHint(err)
	}
	for _, u := range users {
		fmt.Fprintln(out(c), sipvm.AOR(u, c.String("domain")))
	}
	return nil
}
