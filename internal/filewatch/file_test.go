package filewatch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readBoth is a parse function over two files, such as a certificate and its
// key; "bad" in either does not parse.
func readBoth(a, b string) func() (string, error) {
	return func() (string, error) {
		x, err := os.ReadFile(a)
		if err != nil {
			return "", err
		}
		y, err := os.ReadFile(b)
		if err != nil {
			return "", err
		}
		if string(x) == "bad" || string(y) == "bad" {
			return "", errors.New("does not parse")
		}
		return string(x) + "+" + string(y), nil
	}
}

func TestAFileIsReadOnceAtOpenAndKeptCurrent(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "cert"), filepath.Join(dir, "key")
	write(t, a, "c1")
	write(t, b, "k1")
	f, err := Open("pair", readBoth(a, b), a, b)
	if err != nil {
		t.Fatal(err)
	}
	var reloaded []string
	var errs []error
	w := f.watcher(func(v string) { reloaded = append(reloaded, v) }, func(err error) { errs = append(errs, err) })
	tick := func(n int) {
		for range n {
			w.Tick()
		}
	}
	tick(3)
	if f.Value() != "c1+k1" || f.Reloads() != 0 || len(reloaded) != 0 {
		t.Fatalf("value %q, %d reloads: opening must be the only read of an unchanged file", f.Value(), f.Reloads())
	}

	write(t, b, "k2") // only the second file changes
	tick(2)
	if f.Value() != "c1+k2" || f.Reloads() != 1 || strings.Join(reloaded, ",") != "c1+k2" {
		t.Fatalf("value %q, reloads %d (%q): a change of either file is a change", f.Value(), f.Reloads(), reloaded)
	}

	write(t, a, "bad")
	tick(4)
	if f.Value() != "c1+k2" || f.Failures() != 1 || len(errs) != 1 {
		t.Fatalf("value %q, %d failures, errors %v: a bad version keeps the last good one, reported once", f.Value(), f.Failures(), errs)
	}
	write(t, a, "c3")
	tick(2)
	if f.Value() != "c3+k2" || f.Reloads() != 2 {
		t.Fatalf("value %q after the fix, %d reloads", f.Value(), f.Reloads())
	}
}

func TestOpenFailsForWhatCannotBeRead(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "cert")
	if _, err := Open("inbound certificate", readBoth(a, a), a); err == nil || !strings.Contains(err.Error(), "reading inbound certificate") {
		t.Fatalf("missing file: err = %v, want it named", err)
	}
	write(t, a, "bad")
	if _, err := Open("inbound certificate", readBoth(a, a), a); err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Fatalf("bad file: err = %v, want the parse error", err)
	}
}

func TestAStaticFileNeverChanges(t *testing.T) {
	f := Static("built-in")
	f.Watch(t.Context(), 0, func(string) { t.Error("a static file reloaded") }, nil) // returns at once
	if f.Value() != "built-in" || len(f.Paths()) != 0 {
		t.Fatalf("static value %q, paths %v", f.Value(), f.Paths())
	}
}
