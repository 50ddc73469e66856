//go:build unix

package filewatch

import (
	"io/fs"
	"syscall"
)

// fileID returns the device and inode of fi, so a file replaced by rename
// or a symlink swap counts as changed even with the same size and mtime.
func fileID(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino) //nolint:unconvert // types differ across platforms
	}
	return 0, 0
}
