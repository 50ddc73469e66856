package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// Roots is the system certificate pool plus the PEM certificates in extra
// (UPSTREAM_CA_FILE; "" for none): what every upstream is verified against.
func Roots(extra string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if extra == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(extra)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", extra)
	}
	return pool, nil
}

// NewTransport is the HTTP transport of every request panopticon itself
// sends upstream (the egress door's, webhooks'): dial (a Dialer's
// DialContext) and nothing else reaches the network, certificates verify
// against roots, HTTP/2 when the upstream offers it, never a proxy from the
// environment, and bodies pass through as they are (no transparent
// decompression). Callers may tune the returned value before first use.
func NewTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error), roots *x509.CertPool) *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // never HTTPS_PROXY from the environment
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(1024)},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass Accept-Encoding and bodies through untouched
		// Larger buffers: a 32 KiB body chunk leaves as one TLS record and one write.
		WriteBufferSize: 64 << 10,
		ReadBufferSize:  64 << 10,
	}
}
