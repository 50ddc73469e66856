//go:build !unix

package filewatch

import "io/fs"

// fileID is unavailable here; mtime and size still catch most changes.
func fileID(fs.FileInfo) (dev, ino uint64) { return 0, 0 }
