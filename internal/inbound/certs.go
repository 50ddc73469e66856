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
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/refusal"
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
	minter Minter
	names  []policy.Host // INBOUND_HOSTNAMES minted for as they are
	zones  []policy.Host // and those written "*.zone"
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

// NewMintedCerts mints from m for an SNI that hostnames (INBOUND_HOSTNAMES)
// name, and for the local address of the connection for any other SNI or
// none. "*.example.com" means what it means in the allowlist: every name
// under example.com and example.com itself (each leaf is minted for the
// exact name asked, never as a wildcard). An IP address in the list is
// skipped: no client sends one as SNI, and the local address is minted for
// anyway. Anything else that is not a host name is an error.
func NewMintedCerts(m Minter, hostnames []string) (*Certs, error) {
	c := &Certs{minter: m}
	for _, raw := range hostnames {
		name, wildcard := strings.CutPrefix(strings.TrimSpace(raw), "*.")
		h, err := policy.ParseHost(name)
		switch {
		case err != nil && policy.HostRefusal(err) == refusal.IPLiteral && !wildcard:
			continue
		case err != nil:
			return nil, fmt.Errorf("INBOUND_HOSTNAMES: %q: %w", raw, err)
		case wildcard:
			c.zones = append(c.zones, h)
		default:
			c.names = append(c.names, h)
		}
	}
	return c, nil
}

// covers reports whether the minted names include name.
func (c *Certs) covers(name policy.Host) bool {
	if slices.Contains(c.names, name) {
		return true
	}
	return slices.ContainsFunc(c.zones, name.Within)
}

// GetCertificate is a tls.Config.GetCertificate.
func (c *Certs) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c.minter == nil {
		return c.file.Value(), nil
	}
	if name, err := policy.ParseHost(hello.ServerName); err == nil && c.covers(name) {
		return c.minter.Certificate(name.String())
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
