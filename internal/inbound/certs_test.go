package inbound

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// handshake connects to a TLS server using certs and returns the leaf it served.
func handshake(t *testing.T, certs *Certs, serverName string) (*x509.Certificate, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Server(c, &tls.Config{GetCertificate: certs.GetCertificate})
		tc.SetDeadline(time.Now().Add(3 * time.Second))
		tc.Handshake()
		io.Copy(io.Discard, tc)
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", ln.Addr().String(),
		&tls.Config{ServerName: serverName, InsecureSkipVerify: true}) // we inspect the leaf ourselves
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func TestMintedCertificates(t *testing.T) {
	tca := newTestCA(t)
	certs, err := NewMintedCerts(tca.minter, []string{"Localhost.", "agent.example", "*.bots.example", "*.localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"*", "app.example:8443", "exa mple.com"} {
		if _, err := NewMintedCerts(tca.minter, []string{bad}); err == nil || !strings.Contains(err.Error(), "INBOUND_HOSTNAMES") {
			t.Errorf("%q: err = %v, want an error naming INBOUND_HOSTNAMES", bad, err)
		}
	}
	tests := []struct {
		sni     string
		wantDNS string
		wantIP  string
	}{
		{"localhost", "localhost", ""},
		{"agent.example", "agent.example", ""},
		{"a.bots.example", "a.bots.example", ""},
		{"a.b.bots.example", "a.b.bots.example", ""}, // "*.x" means what it means in the allowlist
		{"bots.example", "bots.example", ""},
		{"dev.localhost", "dev.localhost", ""}, // a development zone is fine here
		{"xbots.example", "", "127.0.0.1"},     // a zone is whole labels
		{"unknown.example", "", "127.0.0.1"},
		{"", "", "127.0.0.1"},
	}
	for _, tc := range tests {
		leaf, err := handshake(t, certs, tc.sni)
		if err != nil {
			t.Fatalf("SNI %q: %v", tc.sni, err)
		}
		var gotDNS, gotIP string
		if len(leaf.DNSNames) > 0 {
			gotDNS = leaf.DNSNames[0]
		}
		if len(leaf.IPAddresses) > 0 {
			gotIP = leaf.IPAddresses[0].String()
		}
		if gotDNS != tc.wantDNS || gotIP != tc.wantIP {
			t.Errorf("SNI %q: leaf DNS %v IP %v, want %q %q", tc.sni, leaf.DNSNames, leaf.IPAddresses, tc.wantDNS, tc.wantIP)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: tca.pool}); err != nil {
			t.Errorf("SNI %q: leaf does not chain to the CA: %v", tc.sni, err)
		}
	}
}

// writePair writes a self-signed certificate for cn and its key.
func writePair(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFileCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair(t, certFile, keyFile, "first.example")
	if _, err := NewFileCerts(certFile, filepath.Join(dir, "missing.key"), nil); err == nil {
		t.Error("a missing key is not an error")
	}
	logged := &errorCount{Handler: slog.NewTextHandler(io.Discard, nil)}
	certs, err := NewFileCerts(certFile, keyFile, slog.New(logged))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { certs.Watch(ctx, 10*time.Millisecond); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	cn := func() string {
		t.Helper()
		leaf, err := handshake(t, certs, "whatever")
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	// served waits (at most 5 s) for the handshake to present want.
	served := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for got := cn(); got != want; got = cn() {
			if time.Now().After(deadline) {
				t.Fatalf("served %q, want %q", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	served("first.example")
	writePair(t, certFile, keyFile, "second.example")
	served("second.example")

	// A broken renewal keeps the last good pair, and says so.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for logged.n.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a broken renewal was not reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := cn(); got != "second.example" {
		t.Errorf("broken renewal: served %q", got)
	}
	writePair(t, certFile, keyFile, "third.example")
	served("third.example")
}

// errorCount counts the error records logged through it.
type errorCount struct {
	slog.Handler
	n atomic.Int32
}

func (h *errorCount) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.n.Add(1)
	}
	return nil
}
