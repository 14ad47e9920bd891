package peer

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store/ring"
)

// methodStatus answers a peer's Status, for `voicering ring`.
const methodStatus = "peer.status"

// Status is what a peer reports about itself.
type Status struct {
	dht.Status
	Maintain ring.MaintainStats `json:"maintain"`
	Objects  ring.Counters      `json:"objects"`
	Uptime   time.Duration      `json:"uptime_ns"`
}

// Status returns the peer's view of the ring and what its maintenance did.
func (p *Peer) Status() Status {
	return Status{Status: p.node.Status(), Maintain: p.maintain.Stats(), Objects: p.objects.Counters(), Uptime: time.Since(p.started)}
}

func (p *Peer) handleStatus(context.Context, *dht.Request) ([]byte, error) {
	return json.Marshal(p.Status())
}

// delayed registers handlers that answer only after a delay: a slow peer,
// for measuring how reads cope with one (the benchmark's long-tail case).
type delayed struct {
	r interface {
		Handle(string, dht.Handler)
	}
	d *atomic.Int64 // nanoseconds; 0 answers at once
}

func (dl delayed) Handle(method string, h dht.Handler) {
	dl.r.Handle(method, func(ctx context.Context, req *dht.Request) ([]byte, error) {
		if d := time.Duration(dl.d.Load()); d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return h(ctx, req)
	})
}
