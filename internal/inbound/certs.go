package inbound

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/panopticon-dev/panopticon/internal/filewatch"
)

// Minter mints a leaf for a host name or an IP address (ca.Minter).
type Minter interface {
	Certificate(name string) (*tls.Certificate, error)
}

// certCheckInterval is how often, at most, a handshake looks at the
// certificate files for a renewal.
const certCheckInterval = time.Second

// Certs chooses the certificate of each inbound handshake: either a
// certificate and key from files (reloaded when they change), or a leaf
// minted from our CA for the SNI when it is one of the configured host names,
// else for the address the client connected to.
type Certs struct {
	// Now is the clock; nil means time.Now. Set it before first use.
	Now func() time.Time

	// File mode.
	certFile, keyFile string
	logger            *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate  // guarded by mu
	state     []filewatch.State // guarded by mu: the files behind cert
	lastCheck time.Time         // guarded by mu
	lastBad   []filewatch.State // guarded by mu: the state last found unusable
	lastErr   string            // guarded by mu: the error last logged

	// Minted mode.
	minter    Minter
	hostnames []string // lower case, without trailing dots; "*.example.com" allowed
}

// NewFileCerts loads certFile and keyFile (PEM) and reloads them, at most
// once a second and only when they changed, during later handshakes. A
// renewal that cannot be loaded is logged and the last good pair stays.
func NewFileCerts(certFile, keyFile string, logger *slog.Logger) (*Certs, error) {
	if logger == nil {
		logger = slog.Default()
	}
	c := &Certs{certFile: certFile, keyFile: keyFile, logger: logger}
	state, err := filewatch.StatAll(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading inbound certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading inbound certificate %s with key %s: %w", certFile, keyFile, err)
	}
	c.cert, c.state = &cert, state
	return c, nil
}

// NewMintedCerts mints from m for hostnames (an SNI in the list, "*.x"
// covering every name under x) and, for any other SNI or none, for the
// local address of the connection.
func NewMintedCerts(m Minter, hostnames []string) *Certs {
	c := &Certs{minter: m}
	for _, h := range hostnames {
		c.hostnames = append(c.hostnames, normalizeHost(h))
	}
	return c
}

func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

// GetCertificate is a tls.Config.GetCertificate.
func (c *Certs) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c.minter == nil {
		return c.fileCert(), nil
	}
	if name := normalizeHost(hello.ServerName); name != "" && c.known(name) {
		return c.minter.Certificate(name)
	}
	if hello.Conn == nil {
		return nil, errors.New("choosing an inbound certificate: no server name and no connection")
	}
	ap, err := netip.ParseAddrPort(hello.Conn.LocalAddr().String())
	if err != nil {
		host, _, _ := net.SplitHostPort(hello.Conn.LocalAddr().String())
		return c.minter.Certificate(host)
	}
	return c.minter.Certificate(ap.Addr().Unmap().WithZone("").String())
}

func (c *Certs) known(name string) bool {
	if slices.Contains(c.hostnames, name) {
		return true
	}
	for _, h := range c.hostnames {
		if suffix, ok := strings.CutPrefix(h, "*"); ok && strings.HasSuffix(name, suffix) &&
			!strings.Contains(strings.TrimSuffix(name, suffix), ".") {
			return true
		}
	}
	return false
}

func (c *Certs) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// fileCert returns the file certificate, reloading it first when the files
// changed (checked at most once per certCheckInterval).
func (c *Certs) fileCert() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if now.Sub(c.lastCheck) < certCheckInterval {
		return c.cert
	}
	c.lastCheck = now
	state, err := filewatch.StatAll(c.certFile, c.keyFile)
	switch {
	case err == nil && slices.Equal(state, c.state):
		c.lastErr = ""
		return c.cert
	case err == nil && c.lastBad != nil && slices.Equal(state, c.lastBad):
		return c.cert // already reported
	}
	var cert tls.Certificate
	if err == nil {
		if cert, err = tls.LoadX509KeyPair(c.certFile, c.keyFile); err != nil {
			c.lastBad = state
		}
	}
	if err != nil {
		if msg := err.Error(); msg != c.lastErr {
			c.lastErr = msg
			c.logger.Error("inbound certificate changed but cannot be loaded; keeping the last good one (the files must be readable by the proxy user)",
				"cert", c.certFile, "key", c.keyFile, "err", err)
		}
		return c.cert
	}
	c.cert, c.state, c.lastBad, c.lastErr = &cert, state, nil, ""
	c.logger.Info("inbound certificate reloaded", "cert", c.certFile)
	return c.cert
}
