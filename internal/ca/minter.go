package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// DefaultCacheSize is used by NewMinter when size < 1.
	DefaultCacheSize = 1024
	leafValidity     = 7 * 24 * time.Hour
	// renewBefore: a cached leaf with less than this left is minted again, so a
	// client never receives one that expires during a long connection.
	renewBefore = 24 * time.Hour
	maxNameLen  = 253
)

// Minter mints leaf certificates signed by a CA: ECDSA P-256 keys from
// crypto/rand, a bounded LRU cache, one mint per name at a time, re-minted
// before expiry.
type Minter struct {
	// Now is the clock; nil means time.Now. Set it before first use.
	Now func() time.Time

	ca    *CA
	group flightGroup[string, *tls.Certificate]

	mu    sync.Mutex
	cache *lru // guarded by mu

	hits, misses, mints atomic.Uint64
}

// NewMinter returns a minter caching up to size leaves.
func NewMinter(c *CA, size int) *Minter {
	if size < 1 {
		size = DefaultCacheSize
	}
	return &Minter{ca: c, cache: newLRU(size)}
}

// Stats reports cache hits, cache misses and leaves minted since creation.
// A miss that waited for another caller's mint counts as a miss, not a mint.
func (m *Minter) Stats() (hits, misses, mints uint64) {
	return m.hits.Load(), m.misses.Load(), m.mints.Load()
}

// Certificate returns a leaf for name (a DNS name or an IP address).
func (m *Minter) Certificate(name string) (*tls.Certificate, error) {
	name, err := normalizeName(name)
	if err != nil {
		return nil, err
	}
	if cert := m.cached(name); cert != nil {
		m.hits.Add(1)
		return cert, nil
	}
	m.misses.Add(1)
	return m.group.Do(name, func() (*tls.Certificate, error) {
		// Another flight may have finished between our miss and now.
		if cert := m.cached(name); cert != nil {
			return cert, nil
		}
		cert, err := m.mint(name)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		m.cache.add(name, cert)
		m.mu.Unlock()
		return cert, nil
	})
}

// GetCertificate is a tls.Config.GetCertificate using the SNI (error when absent).
func (m *Minter) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" {
		from := "unknown client"
		if hello.Conn != nil {
			from = hello.Conn.RemoteAddr().String()
		}
		return nil, fmt.Errorf("choosing a certificate for %s: the ClientHello carries no server name (SNI)", from)
	}
	return m.Certificate(hello.ServerName)
}

// cached returns a fresh cached leaf for name, or nil.
func (m *Minter) cached(name string) *tls.Certificate {
	m.mu.Lock()
	defer m.mu.Unlock()
	cert := m.cache.get(name)
	if cert == nil {
		return nil
	}
	if m.now().Add(renewBefore).After(cert.Leaf.NotAfter) {
		m.cache.remove(name)
		return nil
	}
	return cert
}

func (m *Minter) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// mint creates and signs a new leaf for the normalised name.
func (m *Minter) mint(name string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating leaf key for %s: %w", name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := m.now()
	notAfter := now.Add(leafValidity)
	if notAfter.After(m.ca.Cert.NotAfter) {
		notAfter = m.ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.ca.Cert, key.Public(), m.ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing leaf for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing leaf for %s: %w", name, err)
	}
	m.mints.Add(1)
	return &tls.Certificate{
		Certificate: [][]byte{der, m.ca.Cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// normalizeName lower-cases name, strips a trailing dot and IPv6 brackets, and
// rejects anything that is neither an IP address nor an ASCII host name, so a
// hostile SNI cannot put odd text into a certificate or the cache.
func normalizeName(name string) (string, error) {
	orig := name
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		name = name[1 : len(name)-1]
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("minting a certificate for %q: IP address with a zone", orig)
		}
		return ip.Unmap().String(), nil
	}
	if name == "" {
		return "", errors.New("minting a certificate: empty name")
	}
	if len(name) > maxNameLen {
		return "", fmt.Errorf("minting a certificate for %.40q…: name longer than %d bytes", orig, maxNameLen)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("minting a certificate for %q: empty or over-long label", orig)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("minting a certificate for %q: %q is not allowed in a host name (IDNs must be punycode)", orig, r)
			}
		}
	}
	return name, nil
}
