package privdrop

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCapMaskAndList(t *testing.T) {
	cases := []struct {
		name    string
		keep    []Cap
		mask    uint64
		list    string
		wantErr bool
	}{
		{"none", nil, 0, "none", false},
		{"net admin", []Cap{CapNetAdmin}, 0x1000, "CAP_NET_ADMIN", false},
		{"two", []Cap{CapNetAdmin, 1}, 0x1002, "cap(1),CAP_NET_ADMIN", false},
		{"high word", []Cap{40}, 1 << 40, "cap(40)", false},
		{"out of range", []Cap{64}, 0, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := capMask(c.keep)
			if (err != nil) != c.wantErr {
				t.Fatalf("capMask(%v) error = %v, wantErr %v", c.keep, err, c.wantErr)
			}
			if err != nil {
				return
			}
			if m != c.mask {
				t.Errorf("capMask(%v) = %#x, want %#x", c.keep, m, c.mask)
			}
			if got := capList(m); got != c.list {
				t.Errorf("capList(%#x) = %q, want %q", m, got, c.list)
			}
		})
	}
}

const droppedStatus = `Name:	panopticon
Uid:	1337	1337	1337	1337
Gid:	1337	1337	1337	1337
Groups:	 
NoNewPrivs:	1
CapInh:	0000000000000000
CapPrm:	0000000000001000
CapEff:	0000000000001000
CapBnd:	0000000000001000
CapAmb:	0000000000000000
`

func TestCheckStatus(t *testing.T) {
	want := expected(1337, 1337, 1<<CapNetAdmin)
	cases := []struct {
		name    string
		edit    func(string) string
		wantErr string
	}{
		{"dropped", func(s string) string { return s }, ""},
		{"saved uid still root", func(s string) string {
			return strings.Replace(s, "Uid:\t1337\t1337\t1337\t1337", "Uid:\t1337\t1337\t0\t1337", 1)
		}, `Uid is "1337 1337 0 1337"`},
		{"supplementary group", func(s string) string { return strings.Replace(s, "Groups:\t ", "Groups:\t0 ", 1) }, "Groups"},
		{"extra effective cap", func(s string) string {
			return strings.Replace(s, "CapEff:\t0000000000001000", "CapEff:\t0000000000001001", 1)
		}, "CapEff"},
		{"ambient cap", func(s string) string {
			return strings.Replace(s, "CapAmb:\t0000000000000000", "CapAmb:\t0000000000001000", 1)
		}, "CapAmb"},
		{"no_new_privs unset", func(s string) string { return strings.Replace(s, "NoNewPrivs:\t1", "NoNewPrivs:\t0", 1) }, "NoNewPrivs"},
		{"field missing", func(s string) string { return strings.Replace(s, "CapBnd", "Xbnd", 1) }, "CapBnd missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkStatus(c.edit(droppedStatus), want)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("checkStatus() = %v, want nil", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("checkStatus() = %v, want error containing %q", err, c.wantErr)
			}
		})
	}
}

func TestVerifyFailsUndropped(t *testing.T) {
	// This test process has not dropped anything (no_new_privs is unset).
	if err := Verify(os.Getuid(), os.Getgid()); err == nil {
		t.Fatal("Verify() = nil for a process that never dropped privileges")
	}
}

func TestDropRefusesRoot(t *testing.T) {
	for _, ids := range [][2]int{{0, 1337}, {1337, 0}} {
		if err := Drop(ids[0], ids[1]); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("Drop(%d, %d) = %v, want a refusal", ids[0], ids[1], err)
		}
	}
}

func TestDropInThisProcess(t *testing.T) {
	// Only safe where Drop cannot succeed: with cgo linked it must stop
	// before changing anything; without root it must fail.
	cgo := allThreadsSupported() != nil
	if !cgo && os.Geteuid() == 0 {
		t.Skip("skipping: a cgo-free test binary running as root would really drop its privileges; TestDropAsRoot covers this")
	}
	err := Drop(1337, 1337, CapNetAdmin)
	if err == nil {
		t.Fatal("Drop() = nil, want an error")
	}
	if cgo && !errors.Is(err, ErrAllThreadsUnsupported) {
		t.Fatalf("Drop() in a cgo binary = %v, want ErrAllThreadsUnsupported", err)
	}
}

// TestDropRefusesCgo builds testdata/dropcheck with cgo linked and checks
// that Drop refuses before changing anything (no root needed).
func TestDropRefusesCgo(t *testing.T) {
	goBin := lookGo(t)
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("skipping: no C compiler to build a cgo binary")
	}
	bin := buildDropcheck(t, goBin, t.TempDir(), "1")
	out, err := exec.Command(bin, "-want-cgo-refusal").CombinedOutput()
	if err != nil {
		t.Fatalf("dropcheck -want-cgo-refusal: %v\n%s", err, out)
	}
}

func lookGo(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: go tool not on PATH to build the dropcheck helper")
	}
	return goBin
}

func buildDropcheck(t *testing.T, goBin, dir, cgo string) string {
	t.Helper()
	bin := filepath.Join(dir, "dropcheck")
	build := exec.Command(goBin, "build", "-buildvcs=false", "-o", bin, "./testdata/dropcheck")
	build.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building dropcheck with CGO_ENABLED=%s: %v\n%s", cgo, err, out)
	}
	return bin
}

// TestDropAsRoot builds testdata/dropcheck with CGO_ENABLED=0 and runs it as
// root, once keeping CAP_NET_ADMIN and once keeping nothing.
func TestDropAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to drop privileges")
	}
	goBin := lookGo(t)
	dir := t.TempDir()
	// TempDir is 0700; open it up so that only the file mode guards secret.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := buildDropcheck(t, goBin, dir, "0")
	secret := filepath.Join(dir, "root-only")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
	}{
		{"keep CAP_NET_ADMIN", []string{"-keep-net-admin", "-secret", secret}},
		{"keep nothing", []string{"-secret", secret}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := exec.Command(bin, c.args...).CombinedOutput()
			t.Logf("dropcheck %s:\n%s", strings.Join(c.args, " "), out)
			if err != nil {
				t.Fatalf("dropcheck failed: %v", err)
			}
		})
	}
}
