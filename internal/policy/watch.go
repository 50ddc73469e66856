package policy

import (
	"context"
	"time"

	"github.com/panopticon-dev/panopticon/internal/filewatch"
)

// Watch polls path every interval (mtime, size, inode — which also catches an
// editor replacing the file and a kubelet ..data symlink swap) and, on change,
// parses it outside any lock and hands the result to onReload. A file that is
// missing or fails to parse calls onError and keeps the last good list in force.
// It returns when ctx is done.
//
// Watch loads the file once as soon as it starts, so a change made between
// the caller's own ParseFile and the start of Watch is never missed; expect
// one onReload (or onError) right away. After that, a change is loaded only
// once the file has stayed the same for one interval, so a file caught
// mid-write is not loaded half-written (a truncated name may still parse);
// it is retried on the next tick. A failure is reported once per file
// state, not on every tick. Either callback may be nil. An interval <= 0
// means one second.
func Watch(ctx context.Context, path string, interval time.Duration, onReload func(*Allowlist), onError func(error)) {
	newWatcher(path, onReload, onError).Run(ctx, interval)
}

func newWatcher(path string, onReload func(*Allowlist), onError func(error)) *filewatch.Watcher {
	return &filewatch.Watcher{
		Path:        path,
		What:        "allowlist",
		LoadAtStart: true,
		OnError:     onError,
		Load: func() error {
			list, err := ParseFile(path)
			if err != nil {
				return err
			}
			if onReload != nil {
				onReload(list)
			}
			return nil
		},
	}
}
