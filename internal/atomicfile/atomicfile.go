// Package atomicfile writes a file so that a reader, or a crash, sees the
// old content or the new, never a part: the data goes to a synced temporary
// file beside the target, created exclusively under a fresh name (so a link
// planted in a directory another identity can write is never followed),
// and is then renamed over the target (Replace) or linked into place
// (Create). Every file panopticon writes for others to read goes through it:
// the exported CA, the CA key, the runtime allowlist, the firewall-ready
// marker and the self-test verdict.
//
//	err := atomicfile.Replace("/etc/panopticon/ca-cert.pem", pem, 0o644)
//
// Non-goals: locking between writers (each file has one writer).
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Replace puts data at path with mode perm, replacing what was there.
func Replace(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("renaming %s to %s: %w", tmp, path, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

// Create puts data at path with mode perm, failing if path already exists
// (fs.ErrExist): two writers racing cannot both win.
func Create(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("linking %s into place: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

// writeTemp writes data with mode perm to a synced temporary file beside
// path and returns its name.
func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("creating temporary file for %s: %w", path, err)
	}
	name := f.Name()
	fail := func(what string, err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", fmt.Errorf("%s %s: %w", what, name, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail("setting mode of", err)
	}
	if _, err := f.Write(data); err != nil {
		return fail("writing", err)
	}
	if err := f.Sync(); err != nil {
		return fail("syncing", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("closing %s: %w", name, err)
	}
	return name, nil
}

// syncDir makes a rename durable (best effort: not every filesystem can).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
