package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/filewatch"
)

const (
	watchInterval = 10 * time.Millisecond
	watchTimeout  = 5 * time.Second
)

// These tests are the allowlist file as the process keeps it current: opened
// once at start-up, then watched (internal/filewatch).

// openAllowlist is what run does at start-up.
func openAllowlist(path string) (*filewatch.File[*Allowlist], error) {
	return filewatch.Open("allowlist", func() (*Allowlist, error) { return ParseFile(path) }, path)
}

// watchRecorder watches the allowlist at path and records what it reports.
type watchRecorder struct {
	file    *filewatch.File[*Allowlist]
	reloads chan *Allowlist
	errs    chan error
	stop    func()
}

// startWatch opens path, checks that the list in force allows first, and
// watches it.
func startWatch(t *testing.T, path, first string) *watchRecorder {
	t.Helper()
	f, err := openAllowlist(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Value().Match(first, 443); !ok {
		t.Fatalf("the list opened at start does not allow %s", first)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &watchRecorder{file: f, reloads: make(chan *Allowlist, 100), errs: make(chan error, 100)}
	var wg sync.WaitGroup
	wg.Go(func() {
		f.Watch(ctx, watchInterval,
			func(a *Allowlist) { r.reloads <- a },
			func(err error) { r.errs <- err })
	})
	r.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(r.stop)
	return r
}

// waitReload waits for a reload whose list allows host.
func (r *watchRecorder) waitReload(t *testing.T, host string) {
	t.Helper()
	deadline := time.After(watchTimeout)
	for {
		select {
		case a := <-r.reloads:
			if _, ok := a.Match(host, 443); ok {
				if _, ok := r.file.Value().Match(host, 443); !ok {
					t.Fatalf("reloaded a list allowing %s, but the one in force does not", host)
				}
				return
			}
		case err := <-r.errs:
			t.Fatalf("waiting for a reload allowing %s: unexpected error %v", host, err)
		case <-deadline:
			t.Fatalf("no reload allowing %s within %v", host, watchTimeout)
		}
	}
}

// waitError waits for an error containing want, failing on any reload.
func (r *watchRecorder) waitError(t *testing.T, want string) {
	t.Helper()
	select {
	case err := <-r.errs:
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %q, want it to contain %q", err, want)
		}
	case a := <-r.reloads:
		t.Fatalf("reloaded %v, want an error containing %q", a.Entries(), want)
	case <-time.After(watchTimeout):
		t.Fatalf("no error containing %q within %v", want, watchTimeout)
	}
}

// quiet checks nothing is reported for a few intervals.
func (r *watchRecorder) quiet(t *testing.T) {
	t.Helper()
	select {
	case a := <-r.reloads:
		t.Fatalf("unexpected reload %v", a.Entries())
	case err := <-r.errs:
		t.Fatalf("unexpected error %v", err)
	case <-time.After(10 * watchInterval):
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchEditInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowlist.txt")
	writeFile(t, path, "a.example\n")
	r := startWatch(t, path, "a.example")
	r.quiet(t)

	writeFile(t, path, "a.example\nb.example\n")
	r.waitReload(t, "b.example")
	r.quiet(t) // one change, one reload
}

func TestWatchReplaceByRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "allowlist.txt")
	writeFile(t, path, "a.example\n")
	r := startWatch(t, path, "a.example")

	// Same size as before, so only the inode tells the files apart.
	tmp := filepath.Join(dir, ".allowlist.txt.swp")
	writeFile(t, tmp, "b.example\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	r.waitReload(t, "b.example")
}

func TestWatchKubeletSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mkdata := func(name, text string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "allowlist.txt"), text)
	}
	// The layout a kubelet ConfigMap volume uses.
	mkdata("..2024_01_01_00_00_00.000000001", "a.example\n")
	if err := os.Symlink("..2024_01_01_00_00_00.000000001", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "allowlist.txt")
	if err := os.Symlink(filepath.Join("..data", "allowlist.txt"), path); err != nil {
		t.Fatal(err)
	}
	r := startWatch(t, path, "a.example")
	r.quiet(t)

	mkdata("..2024_01_01_00_01_00.000000002", "b.example\n")
	tmpLink := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink("..2024_01_01_00_01_00.000000002", tmpLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2024_01_01_00_00_00.000000001")); err != nil {
		t.Fatal(err)
	}
	r.waitReload(t, "b.example")
}

func TestWatchBrokenFileKeepsLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowlist.txt")
	writeFile(t, path, "a.example\n")
	r := startWatch(t, path, "a.example")

	writeFile(t, path, "a.example\n# fine\n*\n")
	r.waitError(t, path+":3: \"*\" matches everything")
	r.quiet(t) // reported once, not on every tick

	writeFile(t, path, "a.example\nc.example\n")
	r.waitReload(t, "c.example")
}

func TestWatchDeletedFileKeepsLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowlist.txt")
	writeFile(t, path, "a.example\n")
	r := startWatch(t, path, "a.example")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	r.waitError(t, "file is missing")
	r.quiet(t)

	writeFile(t, path, "d.example\n")
	r.waitReload(t, "d.example")
}

func TestAMissingAllowlistIsAStartUpError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowlist.txt")
	if _, err := openAllowlist(path); err == nil || !strings.Contains(err.Error(), "reading allowlist") {
		t.Fatalf("err = %v, want a start-up error that names the allowlist", err)
	}
	writeFile(t, path, "*\n")
	if _, err := openAllowlist(path); err == nil || !strings.Contains(err.Error(), path+":1:") {
		t.Fatalf("err = %v, want the bad line named", err)
	}
}

// Opening parses the file once and is not a reload.
func TestOpeningIsNotAReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowlist.txt")
	writeFile(t, path, "a.example\n")
	r := startWatch(t, path, "a.example")
	r.quiet(t)
	if n := r.file.Reloads(); n != 0 {
		t.Fatalf("%d reloads counted for a file that did not change", n)
	}
	writeFile(t, path, "a.example\nb.example\n")
	r.waitReload(t, "b.example")
	if n := r.file.Reloads(); n != 1 {
		t.Fatalf("%d reloads counted for one change", n)
	}
}

// TestWatchMidWrite checks that a file caught half-written is not loaded,
// whether or not the half parses, but retried until it settles.
func TestWatchMidWrite(t *testing.T) {
	tests := []struct {
		name string
		half string
	}{
		{"half fails to parse", "a.example\nb.exa*"},
		{"half parses", "a.example\nb.exam"},
		{"empty after truncate", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "allowlist.txt")
			writeFile(t, path, "a.example\n")
			var reloads, errs []string
			st, err := filewatch.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			// The Watcher a File runs, ticked by hand.
			w := &filewatch.Watcher{Paths: []string{path}, Current: st,
				Load: func() error {
					a, err := ParseFile(path)
					if err != nil {
						return err
					}
					var names []string
					for _, e := range a.Entries() {
						names = append(names, e.String())
					}
					reloads = append(reloads, strings.Join(names, ","))
					return nil
				},
				OnError: func(err error) { errs = append(errs, err.Error()) },
			}
			writeFile(t, path, tt.half)
			w.Tick()
			writeFile(t, path, "a.example\nb.example\n")
			w.Tick()
			w.Tick()
			w.Tick()
			want := []string{"a.example,b.example"}
			if len(errs) != 0 || strings.Join(reloads, " ") != strings.Join(want, " ") {
				t.Fatalf("reloads = %q, errors = %q; want reloads %q and no error", reloads, errs, want)
			}
		})
	}
}

func TestWatchReturnsOnCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allowlist.txt")
	writeFile(t, path, "a.example\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	f, err := openAllowlist(path)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		f.Watch(ctx, watchInterval, nil, nil)
		close(done)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(watchTimeout):
		t.Fatal("Watch did not return after cancel")
	}
}
