package ca

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/panopticon-dev/panopticon/internal/atomicfile"
)

// systemRootFiles are the usual PEM bundles of Debian/Ubuntu, RHEL/Fedora and Alpine/BSD.
var systemRootFiles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/cert.pem",
}

// Export writes ca-cert.pem (ours) and ca-bundle.pem (system roots + ours) to dir, mode 0644.
func (c *CA) Export(dir string) error {
	return c.export(dir, systemRootFiles)
}

// export is Export with the candidate system bundles given; the first that
// exists is used, and when none does the bundle holds our certificate only.
func (c *CA) export(dir string, rootFiles []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating CA export directory %s: %w", dir, err)
	}
	ours := c.CertPEM()
	roots, err := readSystemRoots(rootFiles)
	if err != nil {
		return err
	}
	var bundle bytes.Buffer
	bundle.Write(roots)
	if len(roots) > 0 && !bytes.HasSuffix(roots, []byte("\n")) {
		bundle.WriteByte('\n')
	}
	bundle.WriteString("# Panopticon Interception CA: " + c.Cert.Subject.CommonName + "\n")
	bundle.Write(ours)

	if err := atomicfile.Replace(filepath.Join(dir, CertFile), ours, 0o644); err != nil {
		return fmt.Errorf("exporting CA certificate: %w", err)
	}
	if err := atomicfile.Replace(filepath.Join(dir, BundleFile), bundle.Bytes(), 0o644); err != nil {
		return fmt.Errorf("exporting CA bundle: %w", err)
	}
	return nil
}

func readSystemRoots(files []string) ([]byte, error) {
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading system roots %s: %w", f, err)
		}
		return data, nil
	}
	return nil, nil
}
