package dht

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The peer cache is a text file of peer addresses, one a line, after a
// header line naming the format; lines starting with '#' and blank lines
// are ignored. A restarted node joins through these beside its Bootstrap
// list, so a mass restart does not funnel every peer through the few
// configured bootstrap peers (the 2007 Skype outage), and a peer whose
// bootstrap peers are gone still finds the ring.
const peerCacheHeader = "# voicering peer cache v1"

// maxCachedPeers bounds the addresses written to and read from a peer
// cache: a successor list, a predecessor and the distinct fingers.
const maxCachedPeers = 64

// maxCachedAddr bounds one address in a peer cache.
const maxCachedAddr = 255

// errPeerCache marks a peer cache that cannot be read as one.
var errPeerCache = errors.New("dht: peer cache")

// encodePeerCache returns the cache file holding addrs.
func encodePeerCache(addrs []string) []byte {
	var b bytes.Buffer
	b.WriteString(peerCacheHeader + "\n")
	for _, a := range addrs {
		b.WriteString(a)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// parsePeerCache returns the addresses of a cache file, at most
// maxCachedPeers, without duplicates. A file without the header, or with
// an address that is too long or contains spaces or control characters,
// is refused whole (errPeerCache).
func parsePeerCache(b []byte) ([]string, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 512), 4096)
	if !sc.Scan() || strings.TrimSpace(sc.Text()) != peerCacheHeader {
		return nil, fmt.Errorf("%w: no %q header", errPeerCache, peerCacheHeader)
	}
	var addrs []string
	for line := 2; sc.Scan(); line++ {
		a := strings.TrimSpace(sc.Text())
		if a == "" || strings.HasPrefix(a, "#") {
			continue
		}
		if len(a) > maxCachedAddr || strings.IndexFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			return nil, fmt.Errorf("%w: line %d: not an address", errPeerCache, line)
		}
		if len(addrs) < maxCachedPeers && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", errPeerCache, err)
	}
	return addrs, nil
}

// readPeerCache returns the addresses cached at path; a missing file
// holds none.
func readPeerCache(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dht: read peer cache: %w", err)
	}
	addrs, err := parsePeerCache(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return addrs, nil
}

// writePeerCache replaces the cache at path atomically: a reader (or a
// crash) sees the old file or the new one, never half of one.
func writePeerCache(path string, addrs []string) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("dht: write peer cache: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("dht: write peer cache %s: %w", path, err)
		}
	}()
	if _, err := f.Write(encodePeerCache(addrs)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// knownAddrs returns the addresses of the node's successors, predecessor
// and distinct fingers, closest first, at most maxCachedPeers.
func (n *Node) knownAddrs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var addrs []string
	add := func(p Peer) {
		if p.Addr != "" && p.Addr != n.self.Addr && len(addrs) < maxCachedPeers && !slices.Contains(addrs, p.Addr) {
			addrs = append(addrs, p.Addr)
		}
	}
	for _, p := range n.succ {
		add(p)
	}
	if n.hasPred {
		add(n.pred)
	}
	for i := range n.fingers {
		if n.hasFinger[i] {
			add(n.fingers[i])
		}
	}
	return addrs
}

// savePeerCache writes the known peers to Config.PeerCache if they
// changed since the last write. A node that knows no peer keeps the old
// cache: it is all a later start has to go on.
func (n *Node) savePeerCache(context.Context) {
	addrs := n.knownAddrs()
	if len(addrs) == 0 {
		return
	}
	n.cacheMu.Lock()
	defer n.cacheMu.Unlock()
	if slices.Equal(addrs, n.cacheWritten) {
		return
	}
	if err := writePeerCache(n.cfg.PeerCache, addrs); err != nil {
		n.log.Warn("peer cache not saved", "err", err)
		return
	}
	n.cacheWritten = addrs
}
