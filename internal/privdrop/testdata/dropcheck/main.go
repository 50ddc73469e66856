// Command dropcheck is built by privdrop's root test with CGO_ENABLED=0. It
// starts as root, calls privdrop.Drop and then probes what the process can
// still do, printing one "ok NAME" or "FAIL NAME: why" line per probe and
// exiting 1 when any probe fails.
//
//	dropcheck -keep-net-admin -secret /tmp/x/root-only
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"syscall"

	"github.com/panopticon-dev/panopticon/internal/privdrop"
	"golang.org/x/sys/unix"
)

func main() {
	keepNetAdmin := flag.Bool("keep-net-admin", false, "keep CAP_NET_ADMIN")
	secret := flag.String("secret", "", "a root-only file that must become unreadable")
	uid := flag.Int("uid", 1337, "uid to drop to")
	gid := flag.Int("gid", 1337, "gid to drop to")
	wantCgoRefusal := flag.Bool("want-cgo-refusal", false, "expect Drop to refuse because cgo is linked")
	flag.Parse()

	if *wantCgoRefusal {
		uidBefore := os.Getuid()
		err := privdrop.Drop(*uid, *gid, privdrop.CapNetAdmin)
		if !errors.Is(err, privdrop.ErrAllThreadsUnsupported) {
			fmt.Printf("FAIL cgo refusal: Drop() = %v, want ErrAllThreadsUnsupported\n", err)
			os.Exit(1)
		}
		if keep, _ := unix.PrctlRetInt(unix.PR_GET_KEEPCAPS, 0, 0, 0, 0); os.Getuid() != uidBefore || keep != 0 {
			fmt.Printf("FAIL cgo refusal: state changed (uid %d->%d, keepcaps %d)\n", uidBefore, os.Getuid(), keep)
			os.Exit(1)
		}
		fmt.Printf("ok cgo refusal: %v\n", err)
		return
	}

	// Park goroutines on their own threads first, so Drop must reach
	// threads other than its own.
	const parked = 4
	ready, probe, results := make(chan struct{}), make(chan struct{}), make(chan error)
	for range parked {
		go func() {
			runtime.LockOSThread()
			ready <- struct{}{}
			<-probe
			results <- threadProbe(*uid)
		}()
	}
	for range parked {
		<-ready
	}

	var keep []privdrop.Cap
	if *keepNetAdmin {
		keep = append(keep, privdrop.CapNetAdmin)
	}
	failed := false
	check := func(name string, err error) {
		if err != nil {
			failed = true
			fmt.Printf("FAIL %s: %v\n", name, err)
			return
		}
		fmt.Printf("ok %s\n", name)
	}

	check("drop", privdrop.Drop(*uid, *gid, keep...))
	close(probe)
	for i := range parked {
		check(fmt.Sprintf("parked thread %d", i), <-results)
	}
	check("setuid(0) fails with EPERM", wantErrno(syscall.Setuid(0), syscall.EPERM))
	check("setgid(0) fails with EPERM", wantErrno(syscall.Setgid(0), syscall.EPERM))
	markErr := setMark()
	if *keepNetAdmin {
		check("SO_MARK allowed", markErr)
	} else {
		check("SO_MARK fails with EPERM", wantErrno(markErr, syscall.EPERM))
	}
	if *secret != "" {
		f, err := os.Open(*secret)
		if err == nil {
			f.Close()
		}
		check("root-only file unreadable", wantErrno(err, syscall.EACCES))
	}
	if failed {
		os.Exit(1)
	}
}

// threadProbe runs on a parked thread: its ids must have changed too.
func threadProbe(uid int) error {
	if got := unix.Getuid(); got != uid {
		return fmt.Errorf("getuid() = %d, want %d", got, uid)
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_SETUID, 0, 0, 0); errno != syscall.EPERM {
		return fmt.Errorf("raw setuid(0) on this thread = %v, want EPERM", errno)
	}
	return nil
}

func setMark() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, 0x539)
}

func wantErrno(err error, want syscall.Errno) error {
	if !errors.Is(err, want) {
		return fmt.Errorf("got %v, want %v", err, want)
	}
	return nil
}
