package privdrop

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Verify checks that every thread of the process runs as uid/gid (real,
// effective, saved and filesystem ids) with no supplementary groups,
// effective = permitted = bounding = keep, empty inheritable and ambient
// sets and no_new_privs, and that setuid(0) and setgid(0) fail. It reads
// /proc/self/task/*/status, so threads the Go runtime started earlier are
// covered too.
func Verify(uid, gid int, keep ...Cap) error {
	mask, err := capMask(keep)
	if err != nil {
		return err
	}
	var errs []error
	// Raw per-thread calls: should one succeed, only this thread is root,
	// and the error below makes the caller exit.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_SETUID, 0, 0, 0); errno == 0 {
		errs = append(errs, errors.New("privdrop: setuid(0) succeeded; root can be regained"))
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_SETGID, 0, 0, 0); errno == 0 {
		errs = append(errs, errors.New("privdrop: setgid(0) succeeded; root group can be regained"))
	}
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		return errors.Join(append(errs, fmt.Errorf("privdrop: listing threads in /proc/self/task: %v", err))...)
	}
	want := expected(uid, gid, mask)
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // thread exited meanwhile
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("privdrop: reading %s: %w", path, err))
			continue
		}
		if err := checkStatus(string(b), want); err != nil {
			errs = append(errs, fmt.Errorf("privdrop: thread %s: %w", filepath.Base(filepath.Dir(path)), err))
		}
	}
	return errors.Join(errs...)
}

// expected returns the /proc status fields Verify requires.
func expected(uid, gid int, mask uint64) map[string]string {
	ids := func(id int) string { s := strconv.Itoa(id); return strings.Join([]string{s, s, s, s}, " ") }
	caps := fmt.Sprintf("%016x", mask)
	return map[string]string{
		"Uid":        ids(uid),
		"Gid":        ids(gid),
		"Groups":     "",
		"CapInh":     "0000000000000000",
		"CapPrm":     caps,
		"CapEff":     caps,
		"CapBnd":     caps,
		"CapAmb":     "0000000000000000",
		"NoNewPrivs": "1",
	}
}

// checkStatus compares the fields of a /proc/<pid>/status text with want
// (values compared with whitespace normalised).
func checkStatus(status string, want map[string]string) error {
	got := map[string]string{}
	for line := range strings.SplitSeq(status, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if ok {
			got[key] = strings.Join(strings.Fields(val), " ")
		}
	}
	var errs []error
	for _, key := range []string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"} {
		g, ok := got[key]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s missing from status", key))
		case g != want[key]:
			errs = append(errs, fmt.Errorf("%s is %q, want %q", key, g, want[key]))
		}
	}
	return errors.Join(errs...)
}
