// Package ca keeps panopticon's interception CA and mints leaf certificates.
//
//	authority, err := ca.LoadOrCreate("/var/lib/panopticon/ca")
//	err = authority.Export("/panopticon-certs") // ca-cert.pem, ca-bundle.pem
//	m := ca.NewMinter(authority, 1024)
//	tlsConfig := &tls.Config{GetCertificate: m.GetCertificate}
//
// Non-goals: upstream verification, ACME, revocation.
package ca

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
)

// CA is the interception authority: ECDSA P-256, created on first start.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// LoadOrCreate loads ca-key.pem/ca-cert.pem from dir, or creates them
// (dir 0700, key 0600) when absent. A half-present pair or unreadable dir is an error.
func LoadOrCreate(dir string) (*CA, error) { panic("unimplemented") }

// Export writes ca-cert.pem (ours) and ca-bundle.pem (system roots + ours) to dir, mode 0644.
func (c *CA) Export(dir string) error { panic("unimplemented") }

// Minter mints leaf certificates signed by a CA: ECDSA P-256 keys from
// crypto/rand, a bounded LRU cache, one mint per name at a time, re-minted
// before expiry.
type Minter struct{}

// NewMinter returns a minter caching up to size leaves.
func NewMinter(c *CA, size int) *Minter { panic("unimplemented") }

// Certificate returns a leaf for name (a DNS name or an IP address).
func (m *Minter) Certificate(name string) (*tls.Certificate, error) { panic("unimplemented") }

// GetCertificate is a tls.Config.GetCertificate using the SNI (error when absent).
func (m *Minter) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	panic("unimplemented")
}
