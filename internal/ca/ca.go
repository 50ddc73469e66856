// Package ca keeps panopticon's interception CA and mints leaf certificates.
//
//	authority, err := ca.LoadOrCreate("/var/lib/panopticon/ca")
//	err = authority.Export("/panopticon-certs") // ca-cert.pem, ca-bundle.pem
//	m := ca.NewMinter(authority, 1024)
//	tlsConfig := &tls.Config{GetCertificate: m.GetCertificate}
//
// The CA is ECDSA P-256, self-signed, valid ten years, and may sign leaves
// only (MaxPathLen 0). Its private key never leaves dir (ca-key.pem, 0600);
// Export publishes the certificate, alone and appended to the system roots,
// for the application to trust.
//
// Leaves are ECDSA P-256 keys from crypto/rand, valid seven days, kept in a
// bounded LRU cache and minted again when less than a day remains. Concurrent
// requests for one name share a single mint.
//
// Non-goals: upstream verification, ACME, revocation.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/panopticon-dev/panopticon/internal/atomicfile"
)

// File names inside the CA and export directories.
const (
	KeyFile    = "ca-key.pem"    // PKCS#8 private key, CA dir only
	CertFile   = "ca-cert.pem"   // our certificate, CA dir and export dir
	BundleFile = "ca-bundle.pem" // system roots + ours, export dir
)

const (
	caValidity = 10 * 365 * 24 * time.Hour
	// clockSkew back-dates NotBefore so clients with a slightly slow clock accept the certificate.
	clockSkew = time.Hour
)

// CA is the interception authority: ECDSA P-256, created on first start.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// LoadOrCreate loads ca-key.pem/ca-cert.pem from dir, or creates them
// (dir 0700, key 0600) when absent. A half-present pair or unreadable dir is an error.
func LoadOrCreate(dir string) (*CA, error) {
	return loadOrCreate(dir, time.Now())
}

func loadOrCreate(dir string, now time.Time) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating CA directory %s: %w", dir, err)
	}
	keyPath := filepath.Join(dir, KeyFile)
	certPath := filepath.Join(dir, CertFile)
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, err
	}
	certExists, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	switch {
	case keyExists && certExists:
		return load(keyPath, certPath, now)
	case keyExists:
		return nil, fmt.Errorf("loading CA from %s: %s exists but %s is missing; restore %s or remove %s to create a new CA",
			dir, KeyFile, CertFile, certPath, keyPath)
	case certExists:
		return nil, fmt.Errorf("loading CA from %s: %s exists but %s is missing; restore %s or remove %s to create a new CA",
			dir, CertFile, KeyFile, keyPath, certPath)
	}
	c, err := newCA(now)
	if err != nil {
		return nil, err
	}
	if err := c.save(keyPath, certPath); err != nil {
		return nil, err
	}
	return c, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("checking %s: %w", path, err)
	}
}

// newCA generates a fresh authority.
func newCA(now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("generating CA name: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Panopticon Interception CA " + hex.EncodeToString(id)},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signing CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// randomSerial returns a positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // never zero
}

// save writes the key (0600) and then the certificate. Each file is written to
// a temporary name and linked into place, so an existing key is never overwritten.
func (c *CA) save(keyPath, certPath string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return fmt.Errorf("encoding CA key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := atomicfile.Create(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("saving CA key: %w", err)
	}
	if err := atomicfile.Create(certPath, c.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("saving CA certificate: %w", err)
	}
	return nil
}

// load reads and validates an existing pair.
func load(keyPath, certPath string, now time.Time) (*CA, error) {
	cert, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	c := &CA{Cert: cert, Key: key}
	if err := c.validate(now); err != nil {
		return nil, fmt.Errorf("loading CA from %s and %s: %w", keyPath, certPath, err)
	}
	return c, nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("reading CA certificate %s: no PEM CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate %s: %w", path, err)
	}
	return cert, nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("reading CA key %s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY": // SEC 1, as written by `openssl ecparam -genkey`
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("reading CA key %s: unexpected PEM block %q, want PRIVATE KEY (PKCS#8)", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing CA key %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parsing CA key %s: %T cannot sign", path, key)
	}
	return signer, nil
}

// validate checks that the pair can act as our CA at time now.
func (c *CA) validate(now time.Time) error {
	pub, ok := c.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(c.Cert.PublicKey) {
		return errors.New("the key does not match the certificate")
	}
	if !c.Cert.BasicConstraintsValid || !c.Cert.IsCA {
		return errors.New("the certificate is not a CA (basic constraints CA:FALSE)")
	}
	if c.Cert.KeyUsage != 0 && c.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("the certificate may not sign certificates (key usage lacks certSign)")
	}
	if now.After(c.Cert.NotAfter) {
		return fmt.Errorf("the certificate expired at %s; remove both files to create a new CA", c.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.Cert.NotBefore) {
		return fmt.Errorf("the certificate is not valid before %s; check the clock", c.Cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// CertPEM returns the CA certificate, PEM encoded.
func (c *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}
