package dht

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestDetector(t *testing.T) {
	d := detector{min: 200 * time.Millisecond, max: 10 * time.Second, initial: time.Second, deadAfter: 3, memory: time.Minute, m: map[ID]*health{}}
	id := Key("peer")
	now := time.Unix(1000, 0)
	if got, want := d.timeout(id), time.Second; got != want {
		t.Errorf("timeout before any sample = %v, want %v", got, want)
	}
	d.ok(id, 100*time.Millisecond, now)
	if got, want := d.timeout(id), 300*time.Millisecond; got != want { // 100 + 4·50
		t.Errorf("timeout after one 100ms sample = %v, want %v", got, want)
	}
	d.ok(id, 10*time.Millisecond, now)
	d.ok(id, 10*time.Millisecond, now)
	d.ok(id, 10*time.Millisecond, now)
	if got := d.timeout(id); got < d.min {
		t.Errorf("timeout = %v, want at least the floor %v", got, d.min)
	}
	steps := []struct {
		state   PeerState
		usable  bool
		timeout time.Duration // minimum expected
	}{
		{Suspected, false, 2 * d.min},
		{Suspected, false, 4 * d.min},
		{Dead, false, 8 * d.min},
	}
	for i, s := range steps {
		_, cur := d.fail(id, now)
		if cur != s.state {
			t.Errorf("after %d failures: state %v, want %v", i+1, cur, s.state)
		}
		if got := d.usable(id, now); got != s.usable {
			t.Errorf("after %d failures: usable %v, want %v", i+1, got, s.usable)
		}
		if got := d.timeout(id); got < s.timeout || got > d.max {
			t.Errorf("after %d failures: timeout %v, want ≥ %v and ≤ %v", i+1, got, s.timeout, d.max)
		}
	}
	if !d.usable(id, now.Add(2*time.Minute)) {
		t.Error("dead peer still unusable after DeadMemory, want usable (second-hand news may be trusted again)")
	}
	if old := d.ok(id, 0, now); old != Dead {
		t.Errorf("revived from %v, want dead", old)
	}
	if st, _, _ := d.stateOf(id); st != Alive {
		t.Errorf("state after an answer = %v, want alive", st)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{}
	tests := []struct {
		attempt int
		ceil    time.Duration
	}{
		{0, 500 * time.Millisecond},
		{1, time.Second},
		{3, 4 * time.Second},
		{9, 256 * time.Second},
		{10, 5 * time.Minute},
		{40, 5 * time.Minute},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, tt := range tests {
		var most time.Duration
		for range 200 {
			d := b.Delay(tt.attempt, r)
			if d < 0 || d > tt.ceil {
				t.Fatalf("attempt %d: delay %v, want in [0, %v]", tt.attempt, d, tt.ceil)
			}
			most = max(most, d)
		}
		if most < tt.ceil/2 {
			t.Errorf("attempt %d: largest of 200 delays %v, want jitter across [0, %v]", tt.attempt, most, tt.ceil)
		}
	}
	a, c := rand.New(rand.NewPCG(9, 9)), rand.New(rand.NewPCG(9, 9))
	for i := range 10 {
		if x, y := b.Delay(i, a), b.Delay(i, c); x != y {
			t.Fatalf("same seed, attempt %d: %v vs %v, want a replay", i, x, y)
		}
	}
}

// A peer that said it left is not revived by the late answers and calls
// that still arrive from it for a moment, but is once that has passed (a
// restarted peer rejoining).
func TestDetectorLeave(t *testing.T) {
	d := detector{min: 200 * time.Millisecond, max: 10 * time.Second, initial: time.Second, deadAfter: 3, memory: time.Minute, m: map[ID]*health{}}
	id := Key("leaver")
	now := time.Unix(1000, 0)
	d.ok(id, 10*time.Millisecond, now)
	d.markLeft(id, now)
	d.ok(id, 10*time.Millisecond, now.Add(50*time.Millisecond)) // an answer to a call made before the leave
	d.ok(id, 0, now.Add(time.Second))                           // its last maintenance call
	if d.usable(id, now.Add(time.Second)) {
		t.Error("a peer that left is usable again within the grace, want not")
	}
	d.ok(id, 0, now.Add(leaveGrace+time.Second)) // it rejoins
	if st, _, _ := d.stateOf(id); st != Alive || !d.usable(id, now.Add(leaveGrace+time.Second)) {
		t.Errorf("after the grace a call revives it: state %v, want alive and usable", st)
	}
}
