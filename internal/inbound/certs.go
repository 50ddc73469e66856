package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/panopticon-dev/panopticon/internal/filewatch"
	"github.com/panopticon-dev/panopticon/internal/policy"
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
	hostnames *policy.Allowlist // the names minted for, as allowlist patterns
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
// none. The names are allowlist patterns with the allowlist's meaning:
// "*.example.com" covers every name under example.com and example.com
// itself (each leaf is minted for the exact name asked, never a wildcard).
func NewMintedCerts(m Minter, hostnames []string) (*Certs, error) {
	list, err := policy.Parse([]byte(strings.Join(hostnames, "\n")), "INBOUND_HOSTNAMES")
	if err != nil {
		return nil, err
	}
	return &Certs{minter: m, hostnames: list}, nil
}

// GetCertificate is a tls.Config.GetCertificate.
func (c *Certs) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c.minter == nil {
		return c.file.Value(), nil
	}
	if name, err := policy.ParseHost(hello.ServerName); err == nil {
		if _, ok := c.hostnames.Match(name.String(), 0); ok {
			return c.minter.Certificate(name.String())
		}
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
