package flowlog_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
)

func TestFormatLine(t *testing.T) {
	at := time.Date(2030, 1, 2, 18, 32, 45, 0, time.UTC)
	tests := []struct {
		name  string
		event flowlog.Event
		want  string
	}{
		{
			name: "allowed request",
			event: flowlog.Event{
				Time: at, Kind: flowlog.KindEgress, Decision: flowlog.Allow, Reason: "*.openai.com",
				Host: "api.openai.com", Port: 443, Method: "GET", Path: "/v1/chat", Status: 200,
				BytesIn: 1100, BytesOut: 100, DurationMS: 35,
			},
			want: "18:32:45 egress  allow api.openai.com:443 GET /v1/chat 200 1.2kB 35ms [*.openai.com]\n",
		},
		{
			name:  "blocked",
			event: flowlog.Event{Time: at, Kind: flowlog.KindEgress, Decision: flowlog.Block, Reason: "not-allowlisted", Host: "evil.test", Port: 443},
			want:  "18:32:45 egress  BLOCK evil.test:443 not-allowlisted\n",
		},
		{
			name: "secrets and inbound client",
			event: flowlog.Event{
				Time: at, Kind: flowlog.KindInbound, Decision: flowlog.Allow, Reason: "source-allowed", Client: "203.0.113.9",
				Host: "app.example", Port: 443, Method: "POST", Path: "/hook", Status: 200, BytesIn: 312, DurationMS: 12_345,
				Secrets: []string{"PLACEHOLDER_SECRET_VALUE_A", "PLACEHOLDER_SECRET_VALUE_B"},
			},
			want: "18:32:45 inbound allow app.example:443 from 203.0.113.9 POST /hook 200 312B 12.3s [source-allowed] secrets=PLACEHOLDER_SECRET_VALUE_A,PLACEHOLDER_SECRET_VALUE_B\n",
		},
		{
			name:  "dns without port",
			event: flowlog.Event{Time: at, Kind: flowlog.KindDNS, Decision: flowlog.Block, Reason: "nxdomain", Host: "x.test"},
			want:  "18:32:45 dns     BLOCK x.test nxdomain\n",
		},
		{
			name:  "control characters quoted",
			event: flowlog.Event{Time: at, Kind: flowlog.KindEgress, Decision: flowlog.Block, Reason: "r", Host: "a.test", Port: 80, Path: "/x\n12:00:00 egress allow fake"},
			want:  "18:32:45 egress  BLOCK a.test:80 \"/x\\n12:00:00 egress allow fake\" r\n",
		},
		{
			name:  "audit mode lets it through: size and time, and the reason it would have been refused",
			event: flowlog.Event{Time: at, Kind: flowlog.KindEgress, Decision: flowlog.WouldBlock, Reason: "not-allowlisted", Host: "learn.test", Port: 443, Method: "GET", Path: "/", Status: 200, BytesIn: 20, DurationMS: 3},
			want:  "18:32:45 egress  would-block learn.test:443 GET / 200 20B 3ms not-allowlisted\n",
		},
		{
			name:  "ipv6 host",
			event: flowlog.Event{Time: at, Kind: flowlog.KindEgress, Decision: flowlog.Block, Reason: "ip-literal", Host: "2001:db8::1", Port: 443},
			want:  "18:32:45 egress  BLOCK [2001:db8::1]:443 ip-literal\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(flowlog.FormatLine(tt.event)); got != tt.want {
				t.Errorf("FormatLine\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestStdoutLine(t *testing.T) {
	var out bytes.Buffer
	l, err := flowlog.New(flowlog.Options{Dir: t.TempDir()}, &out)
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(flowlog.Event{Kind: flowlog.KindEgress, Decision: flowlog.Block, Reason: "not-allowlisted", Host: "evil.test", Port: 443})
	l.Close() // stdout is written asynchronously; Close drains it
	if !strings.HasSuffix(out.String(), " egress  BLOCK evil.test:443 not-allowlisted\n") {
		t.Errorf("stdout = %q", out.String())
	}
}

func TestFormatLongPath(t *testing.T) {
	line := string(flowlog.FormatLine(flowlog.Event{Kind: flowlog.KindEgress, Decision: flowlog.Allow, Path: "/" + strings.Repeat("a", 500)}))
	if len(line) > 250 || !strings.Contains(line, "…") {
		t.Errorf("long path not cut: %d bytes", len(line))
	}
}

// The tail's columns are the same line, laid out: same parts, same order.
func TestColumnsAreTheSameLine(t *testing.T) {
	at := time.Date(2030, 1, 2, 18, 32, 45, 0, time.UTC)
	for _, e := range []flowlog.Event{
		{Time: at, Kind: flowlog.KindEgress, Decision: flowlog.Allow, Reason: "*.openai.com", Host: "api.openai.com", Port: 443, Method: "GET", Path: "/v1", Status: 200, BytesIn: 1200, DurationMS: 35, Secrets: []string{"OPENAI"}},
		{Time: at, Kind: flowlog.KindDNS, Decision: flowlog.Block, Reason: "not-allowlisted", Host: "evil.test"},
		{Time: at, Kind: flowlog.KindEgress, Decision: flowlog.WouldBlock, Reason: "not-allowlisted", Host: "x.test", Port: 443, BytesIn: 5},
	} {
		plain := strings.Fields(string(flowlog.FormatLine(e)))
		cols := strings.Fields(flowlog.Line(e, flowlog.Style{Columns: true}))
		if strings.Join(plain, " ") != strings.Join(cols, " ") {
			t.Errorf("stdout %q\ncolumns %q", plain, cols)
		}
	}
}
