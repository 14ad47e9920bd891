package remote

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/voicering/voicering/dht"
	"github.com/voicering/voicering/store"
)

// Method names this package adds to a peer's ring transport.
const (
	methodPutShard    = "store.shard.put"
	methodGetShard    = "store.shard.get"
	methodDeleteShard = "store.shard.delete"
	methodListShards  = "store.shard.list"
	methodFindShard   = "store.shard.find"
	methodMerge       = "store.record.merge"
	methodMergeMany   = "store.record.mergemany"
	methodGetRecord   = "store.record.get"
	methodRecordKeys  = "store.record.keys"
)

// Page sizes of listings: one answer stays far below the transport's
// message limit (an info is 78 bytes, a key 32).
const (
	shardPage = 16384
	keyPage   = 16384
)

// Backend is the local store a peer serves.
type Backend interface {
	store.Shards
	store.Records
}

// Registrar is where Register adds its methods: a *dht.Node or a *dht.Mux.
type Registrar interface {
	Handle(method string, h dht.Handler)
}

// Register serves b's shards and records to other peers through r. Any peer
// the transport admits may call them: in a closed ring, only peers (and
// clients) with certificates from the ring's CA.
func Register(r Registrar, b Backend) {
	s := server{b}
	r.Handle(methodPutShard, s.putShard)
	r.Handle(methodGetShard, s.getShard)
	r.Handle(methodDeleteShard, s.deleteShard)
	r.Handle(methodListShards, s.listShards)
	r.Handle(methodFindShard, s.findShard)
	r.Handle(methodMerge, s.merge)
	r.Handle(methodMergeMany, s.mergeMany)
	r.Handle(methodGetRecord, s.getRecord)
	r.Handle(methodRecordKeys, s.recordKeys)
}

type server struct{ b Backend }

// Every handler answers with a status byte (see answer), never a transport
// error, so that store errors keep their meaning on the caller's side.

func (s server) putShard(ctx context.Context, req *dht.Request) ([]byte, error) {
	r := reader{b: req.Body}
	id := r.shardID()
	hash := r.b32("shard hash")
	data := r.blob(store.MaxShardSize, "shard data")
	if err := r.done(); err != nil {
		return answer(nil, err), nil
	}
	return answer(nil, s.b.PutShard(ctx, id, hash, data)), nil
}

func (s server) getShard(ctx context.Context, req *dht.Request) ([]byte, error) {
	r := reader{b: req.Body}
	id := r.shardID()
	if err := r.done(); err != nil {
		return answer(nil, err), nil
	}
	data, hash, err := s.b.GetShard(ctx, id)
	if err != nil {
		return answer(nil, err), nil
	}
	out := make([]byte, 0, 1+32+len(data))
	out = append(out, statusOK)
	out = append(out, hash[:]...)
	return append(out, data...), nil
}

// findShard request: shard id. Answer: the id found | hash | data.
func (s server) findShard(ctx context.Context, req *dht.Request) ([]byte, error) {
	r := reader{b: req.Body}
	id := r.shardID()
	if err := r.done(); err != nil {
		return answer(nil, err), nil
	}
	found, data, hash, err := store.FindShard(ctx, s.b, id)
	if err != nil {
		return answer(nil, err), nil
	}
	out := make([]byte, 0, 1+38+32+len(data))
	out = append(out, statusOK)
	out = appendShardID(out, found)
	out = append(out, hash[:]...)
	return append(out, data...), nil
}

func (s server) deleteShard(ctx context.Context, req *dht.Request) ([]byte, error) {
	r := reader{b: req.Body}
	id := r.shardID()
	if err := r.done(); err != nil {
		return answer(nil, err), nil
	}
	return answer(nil, s.b.DeleteShard(ctx, id)), nil
}

// listShards request: all u8 (1 = every shard, 0 = one index) | index 32 |
// has-after u8 | after shard id. Answer: count u32 | infos | more u8.
func (s server) listShards(ctx context.Context, req *dht.Request) ([]byte, error) {
	r := reader{b: req.Body}
	all := r.u8("mode") == 1
	index := r.b32("storage index")
	hasAfter := r.u8("cursor flag") == 1
	after := r.shardID()
	if err := r.done(); err != nil {
		return answer(nil, err), nil
	}
	seq := s.b.ListShards(ctx, index)
	if all {
		seq = s.b.ListAllShards(ctx)
	}
	var infos []store.ShardInfo
	more := false
	for in, err := range seq {
		if err != nil {
			return answer(nil, err), nil
		}
		if hasAfter && !shardAfter(in.ID, after) {
			continue
		}
		if len(infos) == shardPage {
			more = true
			break
		}
		infos = append(infos, in)
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(len(infos)))
	for _, in := range infos {
		out = appendInfo(out, in)
	}
	return answer(append(out, boolByte(more)), nil), nil
}

// shardAfter reports whether a comes after b in listing order.
func shardAfter(a, b store.ShardID) bool {
	if c := bytes.Compare(a.Index[:], b.Index[:]); c != 0 {
		return c > 0
	}
	if a.Segment != b.Segment {
		return a.Segment > b.Segment
	}
	return a.Shard > b.Shard
}

func (s server) merge(ctx context.Context, req *dht.Request) ([]byte, error) {
	r := reader{b: req.Body}
	key := store.Key(r.b32("record key"))
	es := r.entries(store.MaxBatchEntries)
	if err := r.done(); err != nil {
		return answer(nil, err), nil
	}
	n, err := s.b.MergeRecord(ctx, key, es)
	return answer(binary.BigEndian.AppendUint32(nil, uint32(n)), err), nil
}

// maxMergeMany bounds the merges of one mergemany request.
const maxMergeMany = 1024

// mergeMany request: count u32 | count × (key 32 | entries). Answer: count
// u32 | count × blob of what merge would answer for that merge.
func (s server) mergeMany(ctx context.Context, req *dht.Request) ([]byte, error) {
	r := reader{b: req.Body}
	n := r.u32("merge count")
	if r.err == nil && n > maxMergeMany {
		r.err = fmt.Errorf("%w: %d merges, the limit is %d", errMalformed, n, maxMergeMany)
	}
	var ms []store.RecordMerge
	for i := uint32(0); i < n && r.err == nil; i++ {
		key := store.Key(r.b32("record key"))
		ms = append(ms, store.RecordMerge{Key: key, Entries: r.entries(store.MaxBatchEntries)})
	}
	if err := r.done(); err != nil {
		return answer(nil, err), nil
	}
	out := binary.BigEndian.AppendUint32([]byte{statusOK}, uint32(len(ms)))
	for _, res := range store.MergeAll(ctx, s.b, ms) {
		out = appendBlob(out, answer(binary.BigEndian.AppendUint32(nil, uint32(res.Written)), res.Err))
	}
	return out, nil
}

// getRecord request: key 32 | state u8 (1 = with tombstones).
func (s server) getRecord(ctx context.Context, req *dht.Request) ([]byte, error) {
	r := reader{b: req.Body}
	key := store.Key(r.b32("record key"))
	state := r.u8("state flag") == 1
	if err := r.done(); err != nil {
		return answer(nil, err), nil
	}
	get := s.b.GetRecord
	if state {
		get = s.b.GetRecordState
	}
	es, err := get(ctx, key)
	return answer(appendEntries(nil, es), err), nil
}

// recordKeys request: from 32. Answer: count u32 | keys | more u8.
func (s server) recordKeys(ctx context.Context, req *dht.Request) ([]byte, error) {
	r := reader{b: req.Body}
	from := store.Key(r.b32("from key"))
	if err := r.done(); err != nil {
		return answer(nil, err), nil
	}
	var keys []store.Key
	more := false
	for k, err := range s.b.RecordKeys(ctx, from) {
		if err != nil {
			return answer(nil, err), nil
		}
		if len(keys) == keyPage {
			more = true
			break
		}
		keys = append(keys, k)
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		out = append(out, k[:]...)
	}
	return answer(append(out, boolByte(more)), nil), nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}
