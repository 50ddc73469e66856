package policy

import (
	"context"
	"time"
)

// Watch polls path every interval (mtime, size, inode — which also catches an
// editor replacing the file and a kubelet ..data symlink swap) and, on change,
// parses it outside any lock and hands the result to onReload. A file that is
// missing or fails to parse calls onError and keeps the last good list in force.
// It returns when ctx is done.
func Watch(ctx context.Context, path string, interval time.Duration, onReload func(*Allowlist), onError func(error)) {
	panic("unimplemented")
}
