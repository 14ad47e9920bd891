package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/sipvm"
	"github.com/voicering/voicering/sipvm/media"
	"github.com/voicering/voicering/sipvm/ringpeer"
)

// vmTrust is the trust model of the voicemail key, shown in vm's help.
const vmTrust = "Mailboxes are records on the ring, each entry sealed (XChaCha20-Poly1305) with the ring's\n" +
	"voicemail key. Whoever holds the key and can reach the ring reads every mailbox and, through\n" +
	"the caps in it, every recording: the ring's SIP peers and the operators running these verbs.\n" +
	"Storage-only peers never need the key and see only ciphertext. Keep the file mode 0600.\n\n" +
	"Provisioning: create the key once with `voicering vm key init --out FILE`, copy it to every SIP\n" +
	"peer and start each with `voicering node --sip ... --vm-key FILE`. `voicering demo` keeps one key\n" +
	"for its peers in its data directory, which these verbs use when given no --vm-key."

func vmCommand() *cli.Command {
	common := func(extra ...cli.Flag) []cli.Flag {
		return append([]cli.Flag{
			domainFlag(), peerFlag(), caFlag(), identityFlag(), logLevelFlag(), timeoutFlag(),
			&cli.StringFlag{Name: "vm-key", EnvVars: []string{"VOICERING_VM_KEY"}, Usage: "the ring's voicemail key `FILE` (the one its SIP peers run with); default: the running demo's"},
		}, extra...)
	}
	return &cli.Command{
		Name:        "vm",
		Usage:       "voicemail for operators and scripts: list, fetch and remove messages; create the voicemail key",
		Description: vmTrust,
		Subcommands: []*cli.Command{
			{
				Name:  "key",
				Usage: "manage the ring's voicemail key",
				Subcommands: []*cli.Command{{
					Name:  "init",
					Usage: "create a voicemail key file (mode 0600); never overwrites one",
					Description: "Give the file to every SIP peer of the ring (voicering node --sip ... --vm-key FILE)\n" +
						"and to operators running voicering vm. Peers that only store (no --sip) do not need it.",
					Flags:  []cli.Flag{&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "`FILE` to create"}},
					Action: interspersed(runVMKeyInit),
				}},
			},
			{
				Name: "ls", Usage: "list USER's messages, newest first", ArgsUsage: "USER",
				Description: "Columns: ID (what vm get and vm rm take: any unique prefix works), folder (new or saved),\n" +
					"when the message was left, its length and the caller. --json prints an array of objects\n" +
					"{id, folder, at, duration_seconds, from}. Exit 3: no such user.",
				Flags:  common(&cli.BoolFlag{Name: "json", Usage: "print JSON, for scripts"}),
				Action: interspersed(runVMLs),
			},
			{
				Name: "get", Usage: "write message MSG of USER to a WAV file (16-bit PCM, mono, 8 kHz)", ArgsUsage: "USER MSG",
				Description: "MSG is an ID from vm ls (a unique prefix works). The file is written whole or not at all.\n" +
					"Exit 3: no such user or message.",
				Flags: common(
					quietFlag(),
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "-", Usage: "`FILE` to write (FILE.wav), - for stdout"},
				),
				Action: interspersed(runVMGet),
			},
			{
				Name: "rm", Usage: "remove message MSG of USER: its mailbox entry and its recording", ArgsUsage: "USER MSG",
				Description: "MSG is an ID from vm ls (a unique prefix works). Exit 3: no such user or message.\n" +
					"MWI: the owner's phones are told by NOTIFY, which only a SIP peer can send (the subscription\n" +
					"is a dialog with a SIP peer). This verb sends none: a phone shows the new count at its next\n" +
					"subscription refresh or the next deposit, save or delete through a SIP peer.",
				Flags:  common(),
				Action: interspersed(runVMRm),
			},
		},
	}
}

// interspersed lets a subcommand's flags follow its arguments, as
// flagsFirst does for verbs without subcommands (`vm get alice 1f2e -o
// m.wav`): flags left among the arguments are set on c, and action sees
// only the arguments.
func interspersed(action func(c *cli.Context, args []string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		takesValue := map[string]bool{}
		names := map[string][]string{} // every name of a flag: urfave/cli keeps one value per name
		for _, f := range c.Command.Flags {
			_, isBool := f.(*cli.BoolFlag)
			for _, n := range f.Names() {
				takesValue[n] = !isBool
				names[n] = f.Names()
			}
		}
		var args []string
		in := c.Args().Slice()
		for i := 0; i < len(in); i++ {
			a := in[i]
			switch {
			case a == "--":
				args = append(args, in[i+1:]...)
				i = len(in)
			case len(a) > 1 && a[0] == '-':
				name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
				tv, known := takesValue[name]
				switch {
				case !known:
					return usageError{fmt.Errorf("%s %s: unknown flag %s (see voicering vm %s --help)", c.Command.FullName(), a, a, c.Command.Name)}
				case tv && !hasValue:
					if i+1 >= len(in) {
						return usageError{fmt.Errorf("flag %s needs a value", a)}
					}
					i++
					value = in[i]
				case !tv && !hasValue:
					value = "true"
				}
				for _, n := range names[name] {
					if err := c.Set(n, value); err != nil {
						return usageError{fmt.Errorf("flag %s: %w", a, err)}
					}
				}
			default:
				args = append(args, a)
			}
		}
		return action(c, args)
	}
}

func runVMKeyInit(c *cli.Context, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("vm key init takes no arguments, got %q", args)}
	}
	path := c.String("out")
	if _, err := ringpeer.CreateKey(path); err != nil {
		return err
	}
	fmt.Fprintf(out(c), "created the voicemail key %s (mode 0600)\n"+
		"give it to every SIP peer of the ring: voicering node --sip HOST:PORT --vm-key %s ...\n", path, path)
	return nil
}

// mailboxSession is what the vm verbs work with: the ring session, the
// user's mailboxes and address of record.
type mailboxSession struct {
	*session
	boxes *sipvm.Mailboxes
	user  string
	aor   string
}

// openMailbox checks USER, reads the key, opens the ring session and
// checks that the account exists (exit 3 when not).
func openMailbox(c *cli.Context, user string) (*mailboxSession, error) {
	if err := sipvm.CheckName("user", user); err != nil {
		return nil, usageError{err}
	}
	domain := c.String("domain")
	if err := sipvm.CheckName("domain", domain); err != nil {
		return nil, usageError{err}
	}
	key, err := vmKey(c)
	if err != nil {
		return nil, err
	}
	s, err := openSession(c)
	if err != nil {
		return nil, err
	}
	boxes, err := sipvm.NewMailboxes(s.Records(), key)
	if err != nil {
		s.Close()
		return nil, err
	}
	if _, err := sipvm.NewAccounts(s.Records()).Credentials(s.ctx, user, domain); err != nil {
		s.Close()
		if errors.Is(err, sipvm.ErrNoAccount) {
			return nil, notFoundError{fmt.Errorf("no account %s (see voicering user ls --domain %s)", sipvm.AOR(user, domain), domain)}
		}
		return nil, unreachableHint(err)
	}
	return &mailboxSession{session: s, boxes: boxes, user: user, aor: sipvm.AOR(user, domain)}, nil
}

// vmKey reads --vm-key, else the running demo's key.
func vmKey(c *cli.Context) ([]byte, error) {
	path := c.String("vm-key")
	if path == "" {
		path = filepath.Join(defaultDemoDir(), ringpeer.KeyFile)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, usageError{fmt.Errorf("no --vm-key given and no demo key at %s: give the voicemail key file the ring's SIP peers run with (--vm-key FILE)", path)}
		}
	}
	k, err := ringpeer.ReadKey(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--vm-key: %w", err)}
	}
	return k, nil
}

// read returns the mailbox, failing when none of its entries opens
// under the key (the wrong key) and warning when some do not.
func (m *mailboxSession) read(c *cli.Context) (sipvm.Mailbox, error) {
	box, err := m.boxes.Read(m.ctx, m.aor)
	if err != nil {
		return box, unreachableHint(err)
	}
	if box.Unreadable > 0 {
		err := fmt.Errorf("%d entries of the mailbox of %s are sealed under another voicemail key: give --vm-key the key the ring's SIP peers run with", box.Unreadable, m.aor)
		if len(box.Messages) == 0 && box.Greeting == nil {
			return box, err
		}
		fmt.Fprintf(c.App.ErrWriter, "warning: %v\n", err)
	}
	return box, nil
}

// shortIDs returns the ID to show for each message: the shortest prefix,
// at least 8 hex digits, that no other message of the box shares.
func shortIDs(msgs []sipvm.Message) []string {
	n := 8
	for grow := true; grow; {
		grow = false
		seen := map[string]bool{}
		for _, m := range msgs {
			p := m.ID[:min(n, len(m.ID))]
			if seen[p] && n < len(m.ID) {
				grow = true
			}
			seen[p] = true
		}
		if grow {
			n++
		}
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID[:min(n, len(m.ID))]
	}
	return ids
}

// find returns the message whose ID starts with prefix: exit 3 when none
// does, a usage error when several do.
func (m *mailboxSession) find(box sipvm.Mailbox, prefix string) (sipvm.Message, error) {
	if prefix == "" {
		return sipvm.Message{}, usageError{errors.New("empty message ID: give one that voicering vm ls shows")}
	}
	var hits []sipvm.Message
	for _, msg := range box.Messages {
		if msg.ID == prefix {
			return msg, nil
		}
		if strings.HasPrefix(msg.ID, prefix) {
			hits = append(hits, msg)
		}
	}
	switch len(hits) {
	case 0:
		return sipvm.Message{}, notFoundError{fmt.Errorf("no message %s in the mailbox of %s (see voicering vm ls %s)", prefix, m.aor, m.user)}
	case 1:
		return hits[0], nil
	}
	return sipvm.Message{}, usageError{fmt.Errorf("message ID %s is ambiguous in the mailbox of %s: give more of it (see voicering vm ls %s)", prefix, m.aor, m.user)}
}

// vmListing is one message as vm ls --json prints it.
type vmListing struct {
	ID       string    `json:"id"`
	Folder   string    `json:"folder"`
	At       time.Time `json:"at"`
	Duration float64   `json:"duration_seconds"`
	From     string    `json:"from"`
}

func runVMLs(c *cli.Context, args []string) error {
	if len(args) != 1 {
		return usageError{fmt.Errorf("vm ls takes one USER, got %d arguments", len(args))}
	}
	m, err := openMailbox(c, args[0])
	if err != nil {
		return err
	}
	defer m.Close()
	box, err := m.read(c)
	if err != nil {
		return err
	}
	ids := shortIDs(box.Messages)
	if c.Bool("json") {
		list := make([]vmListing, len(box.Messages))
		for i, msg := range box.Messages {
			list[i] = vmListing{ID: ids[i], Folder: msg.Folder, At: msg.At, Duration: msg.Duration.Seconds(), From: msg.From}
		}
		enc := json.NewEncoder(out(c))
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if len(box.Messages) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(out(c), 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFOLDER\tLEFT\tLENGTH\tFROM")
	for i, msg := range box.Messages {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ids[i], msg.Folder, msg.At.Local().Format("2006-01-02 15:04:05"),
			msg.Duration.Round(100*time.Millisecond), msg.From)
	}
	return tw.Flush()
}

// userAndMessage opens USER's mailbox and finds MSG in it.
func userAndMessage(c *cli.Context, args []string) (*mailboxSession, sipvm.Message, error) {
	if len(args) != 2 {
		return nil, sipvm.Message{}, usageError{fmt.Errorf("vm %s takes USER and MSG (an ID from voicering vm ls USER), got %d arguments", c.Command.Name, len(args))}
	}
	m, err := openMailbox(c, args[0])
	if err != nil {
		return nil, sipvm.Message{}, err
	}
	box, err := m.read(c)
	if err == nil {
		var msg sipvm.Message
		if msg, err = m.find(box, args[1]); err == nil {
			return m, msg, nil
		}
	}
	m.Close()
	return nil, sipvm.Message{}, err
}

func runVMGet(c *cli.Context, args []string) error {
	m, msg, err := userAndMessage(c, args)
	if err != nil {
		return err
	}
	defer m.Close()
	o := c.String("output")
	dir := filepath.Dir(o)
	if o == "-" {
		dir = "" // the system's temporary directory
	}
	// The recording was stored while it was made, so its header sizes
	// are unknown: fetch it into a temporary file, patch the sizes, then
	// rename it into place (or copy it to stdout).
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(o)+".part-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	var w io.Writer = tmp
	if bar := progress(c, int64(msg.Duration.Seconds()*2*media.SampleRate)+44, "get"); bar != nil {
		w = io.MultiWriter(w, bar)
		defer bar.Finish()
	}
	if err := m.Objects().Get(m.ctx, msg.Cap, w); err != nil {
		return classify(unreachableHint(fmt.Errorf("read message %s of %s: %w", msg.ID, m.aor, err)))
	}
	if err := patchWAV(tmp); err != nil {
		return fmt.Errorf("message %s of %s: %w", msg.ID, m.aor, err)
	}
	if o == "-" {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		_, err := io.Copy(out(c), tmp)
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), o)
}

// patchWAV writes the real sizes into the header of the WAV in f, whose
// samples run to the end of the file.
func patchWAV(f *os.File) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	cr := &countingReader{r: f}
	if _, err := media.ReadHeader(cr); err != nil {
		return fmt.Errorf("the recording is not a WAV this version reads: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if cr.n != 44 {
		return fmt.Errorf("the recording's WAV header is %d bytes, not the 44 voicering writes", cr.n)
	}
	return media.PatchSizes(f, uint32(st.Size()-cr.n))
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func runVMRm(c *cli.Context, args []string) error {
	m, msg, err := userAndMessage(c, args)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.boxes.Delete(m.ctx, m.aor, msg.ID); err != nil {
		return unreachableHint(err)
	}
	if err := m.Objects().Remove(m.ctx, msg.Cap); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: message %s is out of the mailbox, but removing its recording failed: %v\n", msg.ID, err)
	}
	fmt.Fprintf(out(c), "removed message %s of %s\n", msg.ID[:min(8, len(msg.ID))], m.aor)
	m.notifyLamps(c)
	return nil
}

// notifyLamps asks the first --peer to NOTIFY the owner's MWI
// subscriptions of the mailbox as it is now; a peer without SIP voicemail
// cannot, and the lamps then update at the phones' next subscription
// refresh.
func (m *mailboxSession) notifyLamps(c *cli.Context) {
	addrs, err := peerAddrs(c)
	if err != nil || len(addrs) == 0 {
		return
	}
	_, err = m.Call(m.ctx, addrs[0], sipvm.MethodNotifyMailbox, []byte(m.aor))
	switch {
	case errors.Is(err, dht.ErrUnknownMethod):
		fmt.Fprintf(c.App.ErrWriter, "note: the peer at %s serves no SIP voicemail (or runs a voicering older than this one), so the phones' message lamps update at their next MWI refresh; give --peer a SIP peer to update them now\n", addrs[0])
	case err != nil:
		fmt.Fprintf(c.App.ErrWriter, "warning: the mailbox changed, but telling the phones (MWI) through %s failed: %v; their message lamps update at their next MWI refresh\n", addrs[0], err)
	}
}
