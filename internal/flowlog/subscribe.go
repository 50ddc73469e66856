package flowlog

import (
	"sync"
	"sync/atomic"
)

// subscribers fans events out without ever waiting for a reader.
type subscribers struct {
	mu     sync.RWMutex
	chans  map[*chan Event]struct{} // guarded by mu; keyed by pointer so each subscription is distinct
	closed bool                     // guarded by mu
	drops  atomic.Uint64
}

// Subscribe returns a channel of future events (buffered buf) and a cancel func.
//
// When the buffer is full, events for this subscriber are dropped and counted
// in SubscriberDrops. cancel closes the channel and may be called more than
// once. After Close, the channel returned is already closed.
func (l *Log) Subscribe(buf int) (<-chan Event, func()) {
	return l.subs.add(buf)
}

// SubscriberDrops counts events dropped because a subscriber's buffer was full.
func (l *Log) SubscriberDrops() uint64 { return l.subs.drops.Load() }

func (s *subscribers) add(buf int) (<-chan Event, func()) {
	if buf < 0 {
		buf = 0
	}
	ch := make(chan Event, buf)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(ch)
		return ch, func() {}
	}
	if s.chans == nil {
		s.chans = make(map[*chan Event]struct{})
	}
	key := &ch
	s.chans[key] = struct{}{}
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.chans[key]; ok {
			delete(s.chans, key)
			close(ch)
		}
	}
}

// publish offers e to every subscriber without blocking. Sending under the
// read lock is what keeps cancel from closing a channel mid-send.
func (s *subscribers) publish(e Event) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for key := range s.chans {
		select {
		case *key <- e:
		default:
			s.drops.Add(1)
		}
	}
}

func (s *subscribers) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for key := range s.chans {
		close(*key)
		delete(s.chans, key)
	}
}
