// Package privdrop switches a root process to an unprivileged uid/gid for
// good: on every thread, with no supplementary groups, only the capabilities
// asked for, no_new_privs set, and a check that root cannot be regained.
//
//	// after the firewall is installed and every listener is open:
//	if err := privdrop.Drop(1337, 1337, privdrop.CapNetAdmin); err != nil {
//		return fmt.Errorf("dropping privileges: %w", err)
//	}
//
// panopticon keeps CAP_NET_ADMIN so that its upstream sockets can set
// SO_MARK, which the firewall requires next to the uid; an app process that
// merely setuid()s to the same uid lacks the capability and cannot.
//
// The binary must be built with CGO_ENABLED=0: the per-thread calls (prctl,
// capset) go through syscall.AllThreadsSyscall, which refuses to run when cgo
// is linked because it cannot reach threads that C code started. Drop
// returns [ErrAllThreadsUnsupported] in that case, before changing anything.
//
// Non-goals: seccomp filters, user namespaces, dropping privileges of child
// processes started before Drop, or restoring privileges afterwards.
package privdrop

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cap is a Linux capability number (see capabilities(7)).
type Cap uint

// CapNetAdmin lets a socket set SO_MARK.
const CapNetAdmin Cap = unix.CAP_NET_ADMIN

func (c Cap) String() string {
	if c == CapNetAdmin {
		return "CAP_NET_ADMIN"
	}
	return fmt.Sprintf("cap(%d)", uint(c))
}

// ErrAllThreadsUnsupported means the binary links cgo, so privileges cannot
// be changed on every thread. Build with CGO_ENABLED=0.
var ErrAllThreadsUnsupported = errors.New("privdrop: syscall.AllThreadsSyscall is unsupported in a binary that links cgo; build with CGO_ENABLED=0")

// capMask returns the 64-bit capability set holding keep.
func capMask(keep []Cap) (uint64, error) {
	var m uint64
	for _, c := range keep {
		if c > 63 {
			return 0, fmt.Errorf("privdrop: capability %d is out of range", uint(c))
		}
		m |= 1 << c
	}
	return m, nil
}

// Drop switches every thread to uid/gid with no supplementary groups, keeps
// only the capabilities in keep (effective and permitted; inheritable,
// ambient and the bounding set hold nothing else), sets no_new_privs, and
// then calls [Verify]. The process must be root (uid 0 with CAP_SETUID,
// CAP_SETGID, CAP_SETPCAP and every capability in keep).
//
// If Drop fails part-way the process is in an unknown state and should exit.
func Drop(uid, gid int, keep ...Cap) error {
	mask, err := capMask(keep)
	if err != nil {
		return err
	}
	if uid <= 0 || gid <= 0 {
		return fmt.Errorf("privdrop: refusing to drop to uid %d gid %d (must be > 0)", uid, gid)
	}
	if err := allThreadsSupported(); err != nil {
		return err
	}
	// Keep permitted capabilities across setuid; without it the kernel
	// clears them when all uids become non-zero.
	if err := allThreadsPrctl(unix.PR_SET_KEEPCAPS, 1); err != nil {
		return fmt.Errorf("privdrop: setting keepcaps: %w", err)
	}
	// The bounding set limits what any later execve could gain. Shrink it
	// while we still hold CAP_SETPCAP.
	for c := range Cap(64) {
		if mask&(1<<c) != 0 {
			continue
		}
		err := allThreadsPrctl(unix.PR_CAPBSET_DROP, uintptr(c))
		if errors.Is(err, syscall.EINVAL) {
			break // past the kernel's last capability
		}
		if err != nil {
			return fmt.Errorf("privdrop: dropping %v from the bounding set: %w", c, err)
		}
	}
	// Without cgo these three apply to all threads (AllThreadsSyscall).
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("privdrop: clearing supplementary groups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("privdrop: setting gid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("privdrop: setting uid %d: %w", uid, err)
	}
	if err := allThreadsCapset(mask); err != nil {
		return fmt.Errorf("privdrop: setting capabilities to %s: %w", capList(mask), err)
	}
	if err := allThreadsPrctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL); err != nil {
		return fmt.Errorf("privdrop: clearing ambient capabilities: %w", err)
	}
	if err := allThreadsPrctl(unix.PR_SET_KEEPCAPS, 0); err != nil {
		return fmt.Errorf("privdrop: clearing keepcaps: %w", err)
	}
	if err := allThreadsPrctl(unix.PR_SET_NO_NEW_PRIVS, 1); err != nil {
		return fmt.Errorf("privdrop: setting no_new_privs: %w", err)
	}
	return Verify(uid, gid, keep...)
}

// allThreadsSupported probes AllThreadsSyscall with a harmless read.
func allThreadsSupported() error {
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_GET_KEEPCAPS, 0, 0)
	if errno == syscall.ENOTSUP {
		return ErrAllThreadsUnsupported
	}
	if errno != 0 {
		return fmt.Errorf("privdrop: probing prctl on all threads: %w", errno)
	}
	return nil
}

func allThreadsPrctl(option, arg uintptr) error {
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, option, arg, 0); errno != 0 {
		if errno == syscall.ENOTSUP {
			return ErrAllThreadsUnsupported
		}
		return errno
	}
	return nil
}

// capHeader and capData mirror struct __user_cap_header_struct and
// __user_cap_data_struct of <linux/capability.h>.
type capHeader struct {
	version uint32
	pid     int32
}

type capData struct {
	effective, permitted, inheritable uint32
}

// allThreadsCapset sets effective = permitted = mask and inheritable = 0 on
// every thread (capset with pid 0 changes only the calling thread).
func allThreadsCapset(mask uint64) error {
	hdr := capHeader{version: unix.LINUX_CAPABILITY_VERSION_3}
	lo, hi := uint32(mask), uint32(mask>>32)
	data := [2]capData{{lo, lo, 0}, {hi, hi, 0}}
	// AllThreadsSyscall is //go:uintptrescapes, so the pointers stay valid.
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_CAPSET,
		uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// capList renders a mask as "CAP_NET_ADMIN,cap(3)" or "none".
func capList(mask uint64) string {
	var names []string
	for c := range Cap(64) {
		if mask&(1<<c) != 0 {
			names = append(names, c.String())
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}
