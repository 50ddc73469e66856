// Package connlimit caps how many connections a door serves at once, the
// same way at every door: at the cap, Accept waits until a served
// connection closes, so a burst is served late (from the kernel's accept
// queue, whose backlog bounds it), never dropped. Without a cap, one agent
// could make the proxy hold descriptors and memory without bound.
//
//	ln = connlimit.Listen(ln, 10000)
//	c, err := ln.Accept() // blocks while 10,000 are open
//	raw := connlimit.Underlying(c) // the *net.TCPConn, for SO_ORIGINAL_DST
//
// Non-goals: per-client limits and rate limits.
package connlimit

import (
	"net"
	"sync"
)

// Listen returns l with at most n connections open at once (n <= 0: no cap).
func Listen(l net.Listener, n int) net.Listener {
	if n <= 0 {
		return l
	}
	return &listener{Listener: l, sem: make(chan struct{}, n), closed: make(chan struct{})}
}

type listener struct {
	net.Listener
	sem       chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.closed: // a server shutting down must not wait for a place
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &conn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// conn gives its place back when it is first closed.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// Underlying is the connection Accept returned underneath the cap's wrapper
// (c itself for any other connection).
func Underlying(c net.Conn) net.Conn {
	if w, ok := c.(*conn); ok {
		return w.Conn
	}
	return c
}
