package ca_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/ca"
)

// testCA creates a fresh CA in a temporary directory.
func testCA(t testing.TB) *ca.CA {
	t.Helper()
	c, err := ca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatalf("creating CA: %v", err)
	}
	return c
}

func TestHandshake(t *testing.T) {
	c := testCA(t)
	m := ca.NewMinter(c, 16)
	roots := x509.NewCertPool()
	roots.AddCert(c.Cert)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer conn.Close()
		srv := tls.Server(conn, &tls.Config{GetCertificate: m.GetCertificate})
		srv.SetDeadline(time.Now().Add(5 * time.Second))
		if err := srv.Handshake(); err != nil {
			serverErr <- err
			return
		}
		_, err = srv.Write([]byte("hello"))
		serverErr <- err
	}()

	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
		&tls.Config{RootCAs: roots, ServerName: "example.test"})
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	defer conn.Close()
	buf := make([]byte, 5)
	if _, err := conn.Read(buf); err != nil {
		t.Fatalf("reading from server: %v", err)
	}
	if err := <-serverErr; err != nil {
		t.Fatalf("server: %v", err)
	}
	chain := conn.ConnectionState().PeerCertificates
	if len(chain) != 2 {
		t.Errorf("server sent %d certificates, want leaf + CA", len(chain))
	}
	if got := chain[0].DNSNames; len(got) != 1 || got[0] != "example.test" {
		t.Errorf("leaf DNS names = %v, want [example.test]", got)
	}
}

func TestGetCertificateWithoutSNI(t *testing.T) {
	m := ca.NewMinter(testCA(t), 4)
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Error("GetCertificate without SNI succeeded")
	}
}

func TestCertificateNames(t *testing.T) {
	c := testCA(t)
	m := ca.NewMinter(c, 16)
	roots := x509.NewCertPool()
	roots.AddCert(c.Cert)
	tests := []struct {
		name     string
		verifyAs string // name to verify the leaf for; empty: Certificate must fail
		wantIP   bool
	}{
		{name: "example.test", verifyAs: "example.test"},
		{name: "Example.TEST.", verifyAs: "example.test"},
		{name: "203.0.113.7", verifyAs: "203.0.113.7", wantIP: true},
		{name: "2001:db8::1", verifyAs: "2001:db8::1", wantIP: true},
		{name: "[2001:db8::2]", verifyAs: "2001:db8::2", wantIP: true},
		{name: ""},
		{name: "bad name.test"},
		{name: "a..b"},
		{name: "*.example.test"},
		{name: "fe80::1%eth0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := m.Certificate(tt.name)
			if tt.verifyAs == "" {
				if err == nil {
					t.Fatalf("Certificate(%q) succeeded, want an error", tt.name)
				}
				return
			}
			if err != nil {
				t.Fatalf("Certificate(%q): %v", tt.name, err)
			}
			leaf := cert.Leaf
			if leaf == nil {
				t.Fatal("Leaf not set")
			}
			if tt.wantIP != (len(leaf.IPAddresses) == 1 && len(leaf.DNSNames) == 0) {
				t.Errorf("IP SANs %v, DNS SANs %v; want IP SAN only = %v", leaf.IPAddresses, leaf.DNSNames, tt.wantIP)
			}
			if len(cert.Certificate) != 2 {
				t.Errorf("chain length %d, want 2", len(cert.Certificate))
			}
			_, err = leaf.Verify(x509.VerifyOptions{
				DNSName:   tt.verifyAs,
				Roots:     roots,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				t.Errorf("verifying leaf for %s: %v", tt.verifyAs, err)
			}
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got < 6*24*time.Hour || got > 8*24*time.Hour {
				t.Errorf("leaf validity %v, want about 7 days", got)
			}
		})
	}
}

func TestCacheHitsAndEviction(t *testing.T) {
	m := ca.NewMinter(testCA(t), 2)
	steps := []struct {
		name      string
		wantMints uint64
	}{
		{"a.test", 1},
		{"b.test", 2},
		{"a.test", 2}, // hit; a is now most recent
		{"c.test", 3}, // evicts b
		{"a.test", 3}, // still cached
		{"b.test", 4}, // evicted, minted again; evicts c
		{"c.test", 5},
	}
	for i, s := range steps {
		if _, err := m.Certificate(s.name); err != nil {
			t.Fatalf("step %d: Certificate(%s): %v", i, s.name, err)
		}
		if _, _, mints := m.Stats(); mints != s.wantMints {
			t.Fatalf("step %d (%s): %d mints, want %d", i, s.name, mints, s.wantMints)
		}
	}
	hits, misses, _ := m.Stats()
	if hits != 2 || misses != 5 {
		t.Errorf("hits, misses = %d, %d; want 2, 5", hits, misses)
	}
}

func TestConcurrentSameNameMintsOnce(t *testing.T) {
	m := ca.NewMinter(testCA(t), 16)
	const n = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	certs := make([]*tls.Certificate, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			certs[i], errs[i] = m.Certificate("same.test")
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if certs[i] != certs[0] {
			t.Fatalf("caller %d got a different certificate", i)
		}
	}
	if _, _, mints := m.Stats(); mints != 1 {
		t.Errorf("%d mints for one name, want 1", mints)
	}
}

func TestRemintNearExpiry(t *testing.T) {
	now := time.Now()
	m := ca.NewMinter(testCA(t), 16)
	m.Now = func() time.Time { return now }

	first, err := m.Certificate("renew.test")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		advance time.Duration
		wantNew bool
	}{
		{"fresh", time.Hour, false},
		{"five days in", 5 * 24 * time.Hour, false},
		{"under a day left", 6*24*time.Hour + time.Minute, true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			now = first.Leaf.NotBefore.Add(time.Hour + s.advance) // NotBefore is back-dated an hour
			cert, err := m.Certificate("renew.test")
			if err != nil {
				t.Fatal(err)
			}
			if (cert != first) != s.wantNew {
				t.Errorf("new certificate = %v, want %v", cert != first, s.wantNew)
			}
			if !now.Before(cert.Leaf.NotAfter) {
				t.Errorf("served a leaf that expired at %v (now %v)", cert.Leaf.NotAfter, now)
			}
		})
	}
}

func BenchmarkMint(b *testing.B) {
	m := ca.NewMinter(testCA(b), 1<<30) // never evicts: every iteration mints
	i := 0
	for b.Loop() {
		if _, err := m.Certificate(fmt.Sprintf("host%d.test", i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkCacheHit(b *testing.B) {
	m := ca.NewMinter(testCA(b), 16)
	if _, err := m.Certificate("hit.test"); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Certificate("hit.test"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
