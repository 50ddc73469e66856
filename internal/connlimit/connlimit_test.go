package connlimit

import (
	"net"
	"testing"
	"time"
)

// At the cap the next connection waits, and is served once one closes.
func TestAtTheCapTheNextConnectionWaitsItsTurn(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listen(raw, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	<-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was served while two were open")
	case <-time.After(200 * time.Millisecond):
	}
	if _, ok := Underlying(first).(*net.TCPConn); !ok {
		t.Fatalf("Underlying = %T, want the accepted *net.TCPConn", Underlying(first))
	}
	first.Close()
	first.Close() // a second Close gives nothing back twice
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting connection was not served after one closed")
	}
	// A second Close of the first gave nothing back twice: with the second
	// still open and the third closed, one more is served, and then no more.
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c2, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("a free place was not used")
	}
	select {
	case <-accepted:
		t.Fatal("served three at once after a double Close")
	case <-time.After(200 * time.Millisecond):
	}
}

// A server shutting down at the cap is not stuck waiting for a place.
func TestCloseEndsAnAcceptWaitingAtTheCap(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listen(raw, 1)
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	done := make(chan error, 1)
	go func() { _, err := ln.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	ln.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Accept after Close returned a connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept waiting at the cap did not return after Close")
	}
}
