package peer

import (
	"cmp"
	"fmt"
	"slices"
)

// Settled reports whether a ring of peers, all in this process, has
// settled: every peer's successor list is the next peers in ID order, as
// far as it reaches. It returns nil when so, else what is still off. Puts
// and gets work before that, but lookups started at different peers may
// still disagree on where a key's replicas are.
func Settled(peers []*Peer) error {
	ps := slices.Clone(peers)
	slices.SortFunc(ps, func(a, b *Peer) int { return a.Self().ID.Compare(b.Self().ID) })
	for i, p := range ps {
		succ := p.Node().Neighbours().Successors
		want := min(len(ps)-1, cmp.Or(p.cfg.Node.Successors, 16))
		if len(succ) < want {
			return fmt.Errorf("peer %s knows %d successors of %d", p.Self().ID.Short(), len(succ), want)
		}
		for k := range want {
			if next := ps[(i+1+k)%len(ps)].Self(); succ[k].ID != next.ID {
				return fmt.Errorf("peer %s: successor %d is %s, not %s", p.Self().ID.Short(), k+1, succ[k].ID.Short(), next.ID.Short())
			}
		}
	}
	return nil
}
