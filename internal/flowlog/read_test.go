package flowlog_test

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
)

func TestReadRecentCompressedBackups(t *testing.T) {
	dir := t.TempDir()
	writeEvents := func(name string, statuses ...int) {
		t.Helper()
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var w io.Writer = f
		var zw *gzip.Writer
		if filepath.Ext(name) == ".gz" {
			zw = gzip.NewWriter(f)
			w = zw
		}
		enc := json.NewEncoder(w)
		for _, s := range statuses {
			if err := enc.Encode(flowlog.Event{Kind: flowlog.KindEgress, Status: s}); err != nil {
				t.Fatal(err)
			}
		}
		if zw != nil {
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeEvents("flows-2030-01-01T00-00-00.000.jsonl.gz", 1, 2, 3)
	writeEvents("flows-2030-01-02T00-00-00.000.jsonl", 4, 5)
	writeEvents("flows-2030-01-03T00-00-00.000.jsonl.gz", 6, 7)
	writeEvents(flowlog.FileName, 8, 9)
	writeEvents("unrelated.jsonl", 100)

	tests := []struct {
		n    int
		want []int
	}{
		{1, []int{9}},
		{3, []int{7, 8, 9}},
		{6, []int{4, 5, 6, 7, 8, 9}},
		{8, []int{2, 3, 4, 5, 6, 7, 8, 9}},
		{20, []int{1, 2, 3, 4, 5, 6, 7, 8, 9}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("last %d", tt.n), func(t *testing.T) {
			events, err := flowlog.ReadRecent(dir, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, e := range events {
				got = append(got, e.Status)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("statuses = %v, want %v", got, tt.want)
			}
		})
	}
}
