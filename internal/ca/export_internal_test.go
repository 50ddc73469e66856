package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestExportSystemRoots(t *testing.T) {
	c, err := newCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := newCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srcDir := t.TempDir()
	systemBundle := filepath.Join(srcDir, "system.pem")
	// No trailing newline: the bundle must still separate the two certificates.
	if err := os.WriteFile(systemBundle, bytes.TrimSpace(other.CertPEM()), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(srcDir, "missing.pem")

	tests := []struct {
		name  string
		roots []string
		want  [][]byte // DER of the bundle's certificates, in order
	}{
		{"first existing file used", []string{missing, systemBundle}, [][]byte{other.Cert.Raw, c.Cert.Raw}},
		{"no system roots", []string{missing}, [][]byte{c.Cert.Raw}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := c.export(dir, tt.roots); err != nil {
				t.Fatalf("export: %v", err)
			}
			data, err := os.ReadFile(filepath.Join(dir, BundleFile))
			if err != nil {
				t.Fatal(err)
			}
			var got [][]byte
			for {
				var block *pem.Block
				block, data = pem.Decode(data)
				if block == nil {
					break
				}
				got = append(got, block.Bytes)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("bundle holds %d certificates, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Errorf("certificate %d differs", i)
				}
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(mustReadFile(t, filepath.Join(dir, BundleFile))) {
				t.Error("x509.CertPool rejects the bundle")
			}
		})
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
