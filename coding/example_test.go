package coding_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/voicering/voicering/coding"
)

// Example codes a message 2-of-3, loses one shard of every segment, and
// reads it back through its cap.
func Example() {
	ctx := context.Background()
	key, _ := coding.NewKey(nil)
	held := map[[2]int][]byte{} // (segment, shard) → bytes, as peers would hold them
	m, err := coding.Encode(ctx, strings.NewReader("hello, voicemail"), key,
		coding.Params{Scheme: coding.Scheme{Needed: 2, Total: 3}},
		func(_ context.Context, s *coding.Segment) error {
			for i, sh := range s.Shards[1:] { // shard 0 is lost
				held[[2]int{s.Index, i + 1}] = bytes.Clone(sh)
			}
			return nil
		})
	if err != nil {
		fmt.Println(err)
		return
	}
	h, _ := m.Hash()
	cap := coding.Cap{Key: key, Manifest: h}

	d, _ := coding.NewDecoder(cap.Key, m, 0)
	var out bytes.Buffer
	err = d.Decode(ctx, &out, func(_ context.Context, c *coding.Collector) error {
		for i := range m.Scheme.Total {
			if sh, ok := held[[2]int{c.Segment(), i}]; ok {
				if enough, _ := c.Offer(i, sh); enough {
					break
				}
			}
		}
		return nil
	})
	fmt.Println(out.String(), err, strings.HasPrefix(cap.String(), "vr1:"))
	// Output: hello, voicemail <nil> true
}
