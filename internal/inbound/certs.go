package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/panopticon-dev/panopticon/internal/filewatch"
)

// Minter mints a leaf for a host name or an IP address (ca.Minter).
type Minter interface {
	Certificate(name string) (*tls.Certificate, error)
}

// Certs chooses the certificate of each inbound handshake: either a
// certificate and key from files (kept current by Watch), or a leaf minted
// from our CA for the SNI when it is one of the configured host names, else
// for the address the client connected to.
type Certs struct {
	// File mode.
	file   *filewatch.File[*tls.Certificate]
	logger *slog.Logger

	// Minted mode.
	minter    Minter
	hostnames []string // lower case, without trailing dots; "*.example.com" allowed
}

// NewFileCerts loads certFile and keyFile (PEM); Watch reloads them when
// they change. A renewal that cannot be loaded is logged and the last good
// pair stays.
func NewFileCerts(certFile, keyFile string, logger *slog.Logger) (*Certs, error) {
	if logger == nil {
		logger = slog.Default()
	}
	f, err := filewatch.Open("inbound certificate", func() (*tls.Certificate, error) {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading inbound certificate %s with key %s: %w", certFile, keyFile, err)
		}
		return &cert, nil
	}, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &Certs{file: f, logger: logger}, nil
}

// Watch keeps a file certificate current until ctx is done (minted
// certificates return at once).
func (c *Certs) Watch(ctx context.Context, interval time.Duration) {
	if c == nil || c.file == nil {
		return
	}
	paths := c.file.Paths()
	c.file.Watch(ctx, interval,
		func(*tls.Certificate) { c.logger.Info("inbound certificate reloaded", "cert", paths[0]) },
		func(err error) {
			c.logger.Error("inbound certificate changed but cannot be loaded; keeping the last good one (the files must be readable by the proxy user)",
				"cert", paths[0], "key", paths[1], "err", err)
		})
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
		return c.file.Value(), nil
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
