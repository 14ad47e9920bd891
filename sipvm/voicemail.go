package sipvm

import (
	"context"
	"fmt"

	"github.com/emiago/sipgo/sip"
)

// Reason says why a call went to voicemail.
type Reason int

const (
	// NotRegistered: the callee has no binding.
	NotRegistered Reason = iota
	// Busy: every contact answered 486 or 600.
	Busy
	// NoAnswer: no contact answered within the ring timeout, or they
	// answered 480 or 408.
	NoAnswer
)

func (r Reason) String() string {
	switch r {
	case NotRegistered:
		return "not registered"
	case Busy:
		return "busy"
	case NoAnswer:
		return "no answer"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Call is an INVITE that no contact took.
type Call struct {
	// AOR is the callee's address of record, "sip:user@domain".
	AOR string
	// Reason is why the call was not connected.
	Reason Reason
	// Request is the INVITE as received (Via, Record-Route untouched).
	Request *sip.Request
	// Tx is the INVITE's server transaction: the service answers on it.
	Tx sip.ServerTransaction
}

// Voicemail takes the calls that no contact answered.
type Voicemail interface {
	// Answer must send call.Tx a final response (a 200 with SDP to take a
	// message, or a failure). It may keep the call up until ctx ends or
	// the caller hangs up; it returns once it is done with the call.
	Answer(ctx context.Context, call Call)
}

// NoVoicemail is the Voicemail of a ring without the voicemail service:
// it answers with the final response that fits the reason (480 when not
// registered or not answering, 486 when busy), its reason phrase saying
// what happened.
type NoVoicemail struct{}

var _ Voicemail = NoVoicemail{}

// Answer sends the final response for call.Reason.
func (NoVoicemail) Answer(_ context.Context, call Call) {
	code, phrase := sip.StatusTemporarilyUnavailable, "Temporarily Unavailable (not registered; no voicemail on this ring)"
	switch call.Reason {
	case Busy:
		code, phrase = sip.StatusBusyHere, "Busy Here (no voicemail on this ring)"
	case NoAnswer:
		phrase = "Temporarily Unavailable (no answer; no voicemail on this ring)"
	}
	call.Tx.Respond(sip.NewResponseFromRequest(call.Request, code, phrase, nil))
}
