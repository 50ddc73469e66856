package ca

import (
	"errors"
	"sync"
)

var errFlightPanicked = errors.New("minting panicked in another goroutine")

// flightGroup runs at most one fn per key at a time; callers arriving while
// it runs wait for and share its result. A tiny golang.org/x/sync/singleflight.
type flightGroup[K comparable, V any] struct {
	mu      sync.Mutex
	flights map[K]*flight[V]
}

type flight[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// Do runs fn for key unless a run is in flight, in which case it waits for that one.
func (g *flightGroup[K, V]) Do(key K, fn func() (V, error)) (V, error) {
	g.mu.Lock()
	if f, ok := g.flights[key]; ok {
		g.mu.Unlock()
		<-f.done
		return f.val, f.err
	}
	if g.flights == nil {
		g.flights = make(map[K]*flight[V])
	}
	f := &flight[V]{done: make(chan struct{})}
	g.flights[key] = f
	g.mu.Unlock()

	returned := false
	defer func() {
		if !returned {
			f.err = errFlightPanicked // the panic continues in this caller; waiters get an error
		}
		g.mu.Lock()
		delete(g.flights, key)
		g.mu.Unlock()
		close(f.done)
	}()
	f.val, f.err = fn()
	returned = true
	return f.val, f.err
}
