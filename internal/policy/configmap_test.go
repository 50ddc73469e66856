package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// configMapVolume reproduces how the kubelet projects a ConfigMap into a
// volume mounted as a directory (pkg/volume/util/atomic_writer.go in
// kubernetes/kubernetes), so Watch is tested against the real layout:
//
//	allowlist.txt -> ..data/allowlist.txt        one link per key, made once
//	..data        -> ..2024_05_01_12_00_00.1234  swapped on every update
//	..2024_05_01_12_00_00.1234/allowlist.txt     the real file, mode 0644
//
// An update writes every key into a new timestamped directory, points a
// "..data_tmp" link at it, renames that link over "..data" (the atomic
// step), adds links for new keys, removes links for keys that are gone and
// deletes the old directory. An update that changes nothing writes nothing.
type configMapVolume struct {
	t   *testing.T
	dir string
}

const (
	dataDirName    = "..data"
	newDataDirName = "..data_tmp"
)

// project makes the volume hold exactly data (key → content).
func (v configMapVolume) project(data map[string]string) {
	t := v.t
	t.Helper()
	dataDir := filepath.Join(v.dir, dataDirName)
	oldTs, err := os.Readlink(dataDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if oldTs != "" && !v.changed(filepath.Join(v.dir, oldTs), data) {
		return
	}

	tsDir, err := os.MkdirTemp(v.dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for key, content := range data {
		path := filepath.Join(tsDir, key)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	tmpLink := filepath.Join(v.dir, newDataDirName)
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpLink, dataDir); err != nil {
		t.Fatal(err)
	}

	for key := range data {
		link := filepath.Join(v.dir, key)
		if _, err := os.Readlink(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join(dataDirName, key), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if oldTs != "" {
		entries, err := os.ReadDir(filepath.Join(v.dir, oldTs))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, still := data[e.Name()]; !still {
				if err := os.Remove(filepath.Join(v.dir, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := os.RemoveAll(filepath.Join(v.dir, oldTs)); err != nil {
			t.Fatal(err)
		}
	}
}

// with returns the volume reporting failures to t (a subtest's own t).
func (v configMapVolume) with(t *testing.T) configMapVolume { return configMapVolume{t: t, dir: v.dir} }

// changed reports whether data differs from what tsDir holds.
func (v configMapVolume) changed(tsDir string, data map[string]string) bool {
	entries, err := os.ReadDir(tsDir)
	if err != nil {
		v.t.Fatal(err)
	}
	if len(entries) != len(data) {
		return true
	}
	for key, content := range data {
		b, err := os.ReadFile(filepath.Join(tsDir, key))
		if err != nil || string(b) != content {
			return true
		}
	}
	return false
}

// backdate gives key's current file the modification time of prev, so that
// only the inode tells an update apart (same size, same mtime).
func (v configMapVolume) backdate(key string, prev time.Time) {
	v.t.Helper()
	if err := os.Chtimes(filepath.Join(v.dir, key), prev, prev); err != nil {
		v.t.Fatal(err)
	}
}

func (v configMapVolume) mtime(key string) time.Time {
	v.t.Helper()
	fi, err := os.Stat(filepath.Join(v.dir, key))
	if err != nil {
		v.t.Fatal(err)
	}
	return fi.ModTime()
}

// checkLayout asserts the kubelet's layout, so the emulation cannot drift
// into something easier for Watch.
func (v configMapVolume) checkLayout(keys ...string) {
	t := v.t
	t.Helper()
	ts, err := os.Readlink(filepath.Join(v.dir, dataDirName))
	if err != nil || !strings.HasPrefix(ts, "..") || strings.Contains(ts, "/") {
		t.Fatalf("..data -> %q (%v), want a link to a sibling ..<timestamp> directory", ts, err)
	}
	for _, key := range keys {
		target, err := os.Readlink(filepath.Join(v.dir, key))
		if err != nil || target != filepath.Join(dataDirName, key) {
			t.Fatalf("%s -> %q (%v), want ..data/%s", key, target, err, key)
		}
	}
	entries, err := os.ReadDir(v.dir)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
		if e.Name() == newDataDirName {
			t.Fatalf("%s left behind", newDataDirName)
		}
	}
	if len(dirs) != 1 || dirs[0] != ts {
		t.Fatalf("timestamped directories %q, want only %q", dirs, ts)
	}
}

// TestWatchConfigMapVolume follows one allowlist ConfigMap through the
// updates a cluster puts it through, with ALLOWLIST_FILE pointing at the
// user-visible link as the Kubernetes manifests do.
func TestWatchConfigMapVolume(t *testing.T) {
	v := configMapVolume{t: t, dir: t.TempDir()}
	const key = "allowlist.txt"
	// A second key, as a ConfigMap often carries: updates swap both.
	const other = "README"
	v.project(map[string]string{key: "a.example\n", other: "notes v1\n"})
	v.checkLayout(key, other)

	r := startWatch(t, filepath.Join(v.dir, key), "a.example")
	r.quiet(t)

	t.Run("edit of another key reloads the same list", func(t *testing.T) {
		v := v.with(t)
		v.project(map[string]string{key: "a.example\n", other: "notes v2\n"})
		v.checkLayout(key, other)
		// The allowlist file is a new inode in a new directory; reloading the
		// same entries is harmless and the list stays in force.
		r.waitReload(t, "a.example")
		r.quiet(t)
	})

	t.Run("same size and mtime, new content", func(t *testing.T) {
		v := v.with(t)
		prev := v.mtime(key)
		v.project(map[string]string{key: "b.example\n", other: "notes v2\n"})
		v.backdate(key, prev)
		v.checkLayout(key, other)
		r.waitReload(t, "b.example")
		r.quiet(t)
	})

	t.Run("unchanged update writes nothing", func(t *testing.T) {
		v := v.with(t)
		v.project(map[string]string{key: "b.example\n", other: "notes v2\n"})
		r.quiet(t)
	})

	t.Run("successive updates", func(t *testing.T) {
		v := v.with(t)
		for _, host := range []string{"c.example", "d.example", "e.example"} {
			v.project(map[string]string{key: "b.example\n" + host + "\n", other: "notes v2\n"})
			v.checkLayout(key, other)
			r.waitReload(t, host)
		}
		r.quiet(t)
	})

	t.Run("broken update keeps the last good list", func(t *testing.T) {
		v := v.with(t)
		v.project(map[string]string{key: "b.example\n*\n", other: "notes v2\n"})
		r.waitError(t, ":2: \"*\" matches everything")
		r.quiet(t)
		v.project(map[string]string{key: "f.example\n", other: "notes v2\n"})
		r.waitReload(t, "f.example")
	})

	t.Run("key removed from the ConfigMap, then restored", func(t *testing.T) {
		v := v.with(t)
		v.project(map[string]string{other: "notes v2\n"})
		v.checkLayout(other)
		if _, err := os.Lstat(filepath.Join(v.dir, key)); !os.IsNotExist(err) {
			t.Fatalf("link for the removed key still there: %v", err)
		}
		r.waitError(t, "file is missing")
		r.quiet(t)
		v.project(map[string]string{key: "g.example\n", other: "notes v2\n"})
		v.checkLayout(key, other)
		r.waitReload(t, "g.example")
	})
}
