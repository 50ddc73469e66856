package flowlog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const (
	tailChunk   = 64 << 10
	maxLineSize = 1 << 20 // longer lines are not events we wrote
)

// ReadRecent returns the last n events (oldest first) from dir/flows.jsonl,
// continuing into rotated backups, newest first, when it holds fewer.
// Lines that do not parse (a line cut short by a crash) are skipped. A
// directory without a log yields no events and no error.
func ReadRecent(dir string, n int) ([]Event, error) {
	if n <= 0 {
		return nil, nil
	}
	files, err := logFiles(dir)
	if err != nil {
		return nil, err
	}
	var newestFirst []Event
	for _, f := range files {
		events, err := readFileTail(f, n-len(newestFirst))
		if errors.Is(err, os.ErrNotExist) {
			continue // rotated or removed since the listing
		}
		if err != nil {
			return nil, err
		}
		for i := len(events) - 1; i >= 0; i-- {
			newestFirst = append(newestFirst, events[i])
		}
		if len(newestFirst) >= n {
			break
		}
	}
	slices.Reverse(newestFirst)
	return newestFirst, nil
}

// logFiles lists flows.jsonl and its backups, newest first. Backup names
// embed a sortable UTC timestamp, so reverse name order is age order.
func logFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing flow logs in %s: %w", dir, err)
	}
	prefix := strings.TrimSuffix(FileName, ".jsonl") + "-"
	var backups []string
	current := false
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == FileName:
			current = true
		case strings.HasPrefix(name, prefix) && (strings.HasSuffix(name, ".jsonl") || strings.HasSuffix(name, ".jsonl.gz")):
			backups = append(backups, name)
		}
	}
	// Compare timestamps without the extension, so x.jsonl and x.jsonl.gz sort alike.
	slices.SortFunc(backups, func(a, b string) int {
		return strings.Compare(strings.SplitN(b, ".jsonl", 2)[0], strings.SplitN(a, ".jsonl", 2)[0])
	})
	var files []string
	if current {
		files = append(files, filepath.Join(dir, FileName))
	}
	for _, b := range backups {
		files = append(files, filepath.Join(dir, b))
	}
	return files, nil
}

// readFileTail returns up to the last n events of one file, oldest first.
func readFileTail(path string, n int) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines [][]byte
	if strings.HasSuffix(path, ".gz") {
		lines, err = gzipTail(f, n)
	} else {
		lines, err = tail(f, n)
	}
	if err != nil {
		return nil, fmt.Errorf("reading flow log %s: %w", path, err)
	}
	events := make([]Event, 0, len(lines))
	for _, line := range lines {
		var e Event
		if json.Unmarshal(line, &e) == nil {
			events = append(events, e)
		}
	}
	return events, nil
}

// tail reads f backwards in chunks until it has n complete, parseable lines
// (or reaches the start), so a 100 MB log costs only what is asked for.
func tail(f *os.File, n int) ([][]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var (
		off     = fi.Size()
		partial []byte   // bytes after the last newline seen so far, scanning backwards
		lines   [][]byte // newest first
	)
	for off > 0 && len(lines) < n {
		size := min(int64(tailChunk), off)
		off -= size
		chunk := make([]byte, size, int(size)+len(partial))
		if _, err := f.ReadAt(chunk, off); err != nil && err != io.EOF {
			return nil, err
		}
		chunk = append(chunk, partial...)
		for len(lines) < n {
			i := bytes.LastIndexByte(chunk, '\n')
			if i < 0 {
				break
			}
			if line := chunk[i+1:]; isEvent(line) {
				lines = append(lines, line)
			}
			chunk = chunk[:i]
		}
		partial = chunk
		if len(partial) > maxLineSize {
			partial = nil // drop an absurd line rather than buffer it
		}
	}
	if off == 0 && len(lines) < n && isEvent(partial) {
		lines = append(lines, partial)
	}
	slices.Reverse(lines)
	return lines, nil
}

// gzipTail scans a compressed backup front to back, keeping the last n lines.
func gzipTail(r io.Reader, n int) ([][]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineSize)
	var lines [][]byte
	for sc.Scan() {
		if !isEvent(sc.Bytes()) {
			continue
		}
		if len(lines) == n {
			lines = lines[1:]
		}
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	return lines, sc.Err()
}

func isEvent(line []byte) bool {
	return len(line) > 0 && json.Valid(line)
}
