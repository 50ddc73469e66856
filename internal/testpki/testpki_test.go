package testpki

import (
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestLeafVerifiesAgainstItsCA(t *testing.T) {
	ca, err := New("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf([]string{"allowed.test"}, []net.IP{net.ParseIP("203.0.113.10")})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca.CertPEM()) {
		t.Fatal("CertPEM does not parse")
	}
	for _, name := range []string{"allowed.test", "203.0.113.10"} {
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "denied.test"}); err == nil {
		t.Error("leaf verifies for a name it does not hold")
	}
	if c, k, err := LeafPEM(leaf); err != nil || len(c) == 0 || len(k) == 0 {
		t.Fatalf("LeafPEM: %v", err)
	}
}
