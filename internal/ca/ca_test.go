package ca_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/ca"
)

func TestLoadOrCreateNewCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c, err := ca.LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	cert := c.Cert
	checks := []struct {
		name string
		ok   bool
	}{
		{"is CA", cert.IsCA && cert.BasicConstraintsValid},
		{"MaxPathLen 0", cert.MaxPathLen == 0 && cert.MaxPathLenZero},
		{"key usage", cert.KeyUsage == x509.KeyUsageCertSign|x509.KeyUsageCRLSign},
		{"P-256", cert.PublicKeyAlgorithm == x509.ECDSA && cert.PublicKey.(*ecdsa.PublicKey).Curve == elliptic.P256()},
		{"common name", strings.HasPrefix(cert.Subject.CommonName, "Panopticon Interception CA ")},
		{"back-dated", time.Until(cert.NotBefore) < -50*time.Minute},
		{"ten years", time.Until(cert.NotAfter) > 9*365*24*time.Hour},
		{"128-bit serial", cert.SerialNumber.Sign() > 0 && cert.SerialNumber.BitLen() > 64},
		{"self-signed", cert.CheckSignatureFrom(cert) == nil},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Errorf("CA certificate fails %q", c.name)
			}
		})
	}
	modes := []struct {
		path string
		want os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{filepath.Join(dir, ca.KeyFile), 0o600},
		{filepath.Join(dir, ca.CertFile), 0o644},
	}
	for _, m := range modes {
		t.Run("mode "+filepath.Base(m.path), func(t *testing.T) {
			fi, err := os.Stat(m.path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != m.want {
				t.Errorf("mode of %s = %v, want %v", m.path, fi.Mode(), m.want)
			}
		})
	}
	t.Run("PKCS#8 key", func(t *testing.T) {
		block, _ := pem.Decode(mustRead(t, filepath.Join(dir, ca.KeyFile)))
		if block == nil || block.Type != "PRIVATE KEY" {
			t.Fatalf("key file is not a PEM PRIVATE KEY")
		}
		if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
			t.Errorf("ParsePKCS8PrivateKey: %v", err)
		}
	})
	t.Run("no leftover temp files", func(t *testing.T) {
		entries, _ := os.ReadDir(dir)
		if len(entries) != 2 {
			t.Errorf("dir holds %d entries, want 2 (key and cert)", len(entries))
		}
	})
}

func TestLoadOrCreateReload(t *testing.T) {
	dir := t.TempDir()
	first, err := ca.LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("creating: %v", err)
	}
	second, err := ca.LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("reloading: %v", err)
	}
	if !bytes.Equal(first.Cert.Raw, second.Cert.Raw) {
		t.Error("reload returned a different certificate")
	}
	pub := second.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !pub.Equal(first.Key.Public()) {
		t.Error("reload returned a different key")
	}
}

func TestLoadOrCreateHalfPresent(t *testing.T) {
	tests := []struct {
		name    string
		remove  string
		mention string
	}{
		{"key only", ca.CertFile, ca.CertFile},
		{"cert only", ca.KeyFile, ca.KeyFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := ca.LoadOrCreate(dir); err != nil {
				t.Fatal(err)
			}
			left := remaining(t, dir, tt.remove)
			before := mustRead(t, left)
			if err := os.Remove(filepath.Join(dir, tt.remove)); err != nil {
				t.Fatal(err)
			}
			_, err := ca.LoadOrCreate(dir)
			if err == nil {
				t.Fatal("LoadOrCreate succeeded with half a pair")
			}
			if !strings.Contains(err.Error(), tt.mention+" is missing") {
				t.Errorf("error %q does not name the missing %s", err, tt.mention)
			}
			if !bytes.Equal(before, mustRead(t, left)) {
				t.Errorf("%s was modified", left)
			}
			if _, err := os.Stat(filepath.Join(dir, tt.remove)); err == nil {
				t.Errorf("%s was recreated", tt.remove)
			}
		})
	}
}

func remaining(t *testing.T, dir, removed string) string {
	t.Helper()
	if removed == ca.KeyFile {
		return filepath.Join(dir, ca.CertFile)
	}
	return filepath.Join(dir, ca.KeyFile)
}

func TestLoadOrCreateUnwritableDir(t *testing.T) {
	// A path below a regular file cannot be created, even by root.
	file := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(file, "ca")
	_, err := ca.LoadOrCreate(dir)
	if err == nil {
		t.Fatal("LoadOrCreate succeeded below a regular file")
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the directory %s", err, dir)
	}
}

func TestLoadOrCreateReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes through directory permissions")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	_, err := ca.LoadOrCreate(dir)
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("LoadOrCreate in read-only dir: err = %v, want an error naming %s", err, dir)
	}
}

func TestLoadOrCreateRejectsBadPair(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name    string
		write   func(t *testing.T, dir string)
		wantErr string
	}{
		{
			name: "mismatched key",
			write: func(t *testing.T, dir string) {
				key := newKey(t)
				writePair(t, dir, newKey(t), selfSigned(t, key, true, now.Add(-time.Hour), now.Add(time.Hour)))
			},
			wantErr: "does not match",
		},
		{
			name: "not a CA",
			write: func(t *testing.T, dir string) {
				key := newKey(t)
				writePair(t, dir, key, selfSigned(t, key, false, now.Add(-time.Hour), now.Add(time.Hour)))
			},
			wantErr: "not a CA",
		},
		{
			name: "expired",
			write: func(t *testing.T, dir string) {
				key := newKey(t)
				writePair(t, dir, key, selfSigned(t, key, true, now.Add(-2*time.Hour), now.Add(-time.Hour)))
			},
			wantErr: "expired",
		},
		{
			name: "garbage certificate",
			write: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, ca.KeyFile), []byte("x"))
				writeFile(t, filepath.Join(dir, ca.CertFile), []byte("not pem"))
			},
			wantErr: "no PEM CERTIFICATE",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.write(t, dir)
			_, err := ca.LoadOrCreate(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LoadOrCreate: err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestExport(t *testing.T) {
	c, err := ca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "export")
	for round := range 2 { // the second round replaces existing files
		if err := c.Export(dir); err != nil {
			t.Fatalf("Export round %d: %v", round, err)
		}
	}
	tests := []struct {
		file     string
		minCerts int
	}{
		{ca.CertFile, 1},
		{ca.BundleFile, 1},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != 0o644 {
				t.Errorf("mode = %v, want 0644", fi.Mode())
			}
			certs := parseAll(t, mustRead(t, path))
			if len(certs) < tt.minCerts {
				t.Fatalf("%s holds %d certificates", tt.file, len(certs))
			}
			if !bytes.Equal(certs[len(certs)-1].Raw, c.Cert.Raw) {
				t.Errorf("%s does not end with our CA", tt.file)
			}
		})
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("export dir holds %d entries, want 2", len(entries))
	}
}

func TestExportUnwritable(t *testing.T) {
	c, err := ca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "plain-file")
	writeFile(t, file, nil)
	dir := filepath.Join(file, "export")
	if err := c.Export(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Export below a file: err = %v, want an error naming %s", err, dir)
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func selfSigned(t *testing.T, key *ecdsa.PrivateKey, isCA bool, notBefore, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  isCA,
		BasicConstraintsValid: true,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePair(t *testing.T, dir string, key *ecdsa.PrivateKey, certDER []byte) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, ca.KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	writeFile(t, filepath.Join(dir, ca.CertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}))
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// parseAll parses every CERTIFICATE block in data, failing on any that does not parse.
func parseAll(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			// Some system bundles carry certificates Go rejects; only ours must parse.
			continue
		}
		certs = append(certs, cert)
	}
}
