package coding

import (
	"context"
	"sync"
)

// ordered runs a three-stage pipeline and returns when every goroutine it
// started has returned:
//
//   - next, called from one goroutine, yields jobs in order until it returns
//     ok == false or an error;
//   - work runs on up to workers jobs at once;
//   - done, called from the caller's goroutine, receives the results in job
//     order.
//
// At most workers+1 jobs exist at any time, so memory stays bounded whatever
// the number of jobs. The first error of any stage cancels the others and is
// returned; results that precede it in order are still given to done.
func ordered[J, R any](ctx context.Context, workers int,
	next func(context.Context) (J, bool, error),
	work func(context.Context, J) (R, error),
	done func(R) error,
) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	type slot struct {
		res   R
		err   error
		ready chan struct{}
	}
	type job struct {
		j J
		s *slot
	}
	queue := make(chan *slot, workers) // slots in job order
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for jb := range jobs {
				jb.s.res, jb.s.err = work(ctx, jb.j)
				close(jb.s.ready)
			}
		})
	}
	var nextErr error // written by the producer, read after wg.Wait
	wg.Go(func() {
		defer close(queue)
		defer close(jobs)
		for ctx.Err() == nil {
			j, ok, err := next(ctx)
			if err != nil {
				nextErr = err
				cancel(err)
				return
			}
			if !ok {
				return
			}
			s := &slot{ready: make(chan struct{})}
			select {
			case queue <- s:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- job{j, s}:
			case <-ctx.Done():
				s.err = context.Cause(ctx)
				close(s.ready)
				return
			}
		}
	})

	var err error
	for s := range queue {
		<-s.ready
		if err != nil {
			continue // drain: every queued slot becomes ready
		}
		if s.err != nil {
			err = s.err
		} else {
			err = done(s.res)
		}
		if err != nil {
			cancel(err)
		}
	}
	wg.Wait()
	if err == nil {
		err = nextErr
	}
	if err == nil {
		err = ctx.Err() // the caller's context ended before next finished
	}
	return err
}

// bufferPool hands out at most limit buffers of one size, reusing those
// given back, so that a pipeline's memory stays bounded. Buffers come from,
// and go back to, a process-wide cache per size: a voicemail-sized object
// then costs no fresh (page-faulting) megabytes per put or get. The cache
// holds no state anyone can observe; peers in one process stay independent.
type bufferPool struct {
	free  chan []byte
	cache *sync.Pool
	mu    sync.Mutex
	made  int
	limit int
}

var segmentBuffers sync.Map // buffer size → *sync.Pool of *[]byte

func newBufferPool(size, limit int) *bufferPool {
	c, ok := segmentBuffers.Load(size)
	if !ok {
		c, _ = segmentBuffers.LoadOrStore(size, &sync.Pool{New: func() any {
			b := make([]byte, size)
			return &b
		}})
	}
	return &bufferPool{free: make(chan []byte, limit), cache: c.(*sync.Pool), limit: limit}
}

// get returns a buffer, waiting for one to be given back when limit are out.
func (p *bufferPool) get(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.free:
		return b, nil
	default:
	}
	p.mu.Lock()
	if p.made < p.limit {
		p.made++
		p.mu.Unlock()
		return *p.cache.Get().(*[]byte), nil
	}
	p.mu.Unlock()
	select {
	case b := <-p.free:
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// put gives a buffer back.
func (p *bufferPool) put(b []byte) { p.free <- b[:cap(b)] }

// close returns the buffers given back to the process-wide cache. Buffers
// still out (held by a cancelled stage) are left to the garbage collector.
func (p *bufferPool) close() {
	for {
		select {
		case b := <-p.free:
			p.cache.Put(&b) // a pointer: putting the slice itself would allocate
		default:
			return
		}
	}
}
