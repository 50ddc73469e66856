package filewatch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // a new inode, as editors do
		t.Fatal(err)
	}
}

func TestAChangeIsLoadedOnceItHasSettled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, "one")
	st, _ := Stat(path)
	var loads []string
	w := &Watcher{Paths: []string{path}, Current: st, Load: func() error {
		b, _ := os.ReadFile(path)
		loads = append(loads, string(b))
		return nil
	}}
	w.Tick()
	if len(loads) != 0 {
		t.Fatalf("loaded an unchanged file: %q", loads)
	}
	write(t, path, "two")
	w.Tick() // changed: wait one tick
	if len(loads) != 0 {
		t.Fatalf("loaded a change before it settled: %q", loads)
	}
	w.Tick()
	w.Tick()
	if strings.Join(loads, ",") != "two" {
		t.Fatalf("loads = %q, want exactly one load of the settled change", loads)
	}
}

func TestAFailureIsReportedOnceAndTheFileIsRetriedWhenItChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, "bad")
	var errs int
	loads := 0
	w := &Watcher{Paths: []string{path}, LoadAtStart: true,
		Load: func() error {
			loads++
			if b, _ := os.ReadFile(path); string(b) == "bad" {
				return errors.New("bad line")
			}
			return nil
		},
		OnError: func(error) { errs++ },
	}
	for range 5 {
		w.Tick()
	}
	if errs != 1 || loads != 1 {
		t.Fatalf("errors = %d, loads = %d; want one of each for one bad state", errs, loads)
	}
	write(t, path, "good")
	w.Tick()
	w.Tick()
	if loads != 2 {
		t.Fatalf("fixed file not loaded: loads = %d", loads)
	}
}

func TestAMissingFileKeepsTheLastGoodValue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, "x")
	st, _ := Stat(path)
	var got error
	w := &Watcher{Paths: []string{path}, What: "allowlist", Current: st,
		Load: func() error { t.Fatal("Load called for a missing file"); return nil }, OnError: func(err error) { got = err }}
	os.Remove(path)
	w.Tick()
	w.Tick()
	if got == nil || !strings.Contains(got.Error(), "watching allowlist") || !strings.Contains(got.Error(), "keeping the last good version") {
		t.Fatalf("err = %v", got)
	}
}
