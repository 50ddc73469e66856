package flowlog

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const maxLinePath = 120 // longer paths are cut in the stdout line (never in the file)

// FormatLine renders e as the one readable stdout line, newline included:
//
//	18:32:45 egress  allow api.openai.com:443 GET /v1/chat 200 1.2kB 35ms [*.openai.com] secrets=OPENAI
//	18:32:46 egress  BLOCK evil.test:443 not-allowlisted
//	18:32:47 inbound allow app.example:443 from 203.0.113.9 POST /hook 200 312B 4ms [source-allowed]
//
// The size is bytes in plus bytes out. The reason is shown in brackets for an
// allowed flow (the rule that matched) and bare for a blocked one. Text from
// the wire is quoted when it holds control characters, so it cannot forge lines.
func FormatLine(e Event) []byte {
	var b strings.Builder
	b.WriteString(e.Time.Format(time.TimeOnly))
	fmt.Fprintf(&b, " %-7s ", clean(e.Kind))
	blocked := e.Decision == Block
	if blocked {
		b.WriteString("BLOCK")
	} else {
		b.WriteString(clean(e.Decision))
	}
	b.WriteByte(' ')
	host := clean(e.Host)
	if host == "" {
		host = "-"
	}
	if e.Port != 0 {
		host = net.JoinHostPort(host, strconv.Itoa(e.Port))
	}
	b.WriteString(host)
	if e.Kind == KindInbound && e.Client != "" {
		b.WriteString(" from " + clean(e.Client))
	}
	if e.Method != "" {
		b.WriteString(" " + clean(e.Method))
	}
	if e.Path != "" {
		b.WriteString(" " + clean(truncate(e.Path, maxLinePath)))
	}
	if e.Status != 0 {
		b.WriteString(" " + strconv.Itoa(e.Status))
	}
	if blocked {
		if e.Reason != "" {
			b.WriteString(" " + clean(e.Reason))
		}
	} else {
		b.WriteString(" " + formatBytes(e.BytesIn+e.BytesOut))
		b.WriteString(" " + formatDuration(e.DurationMS))
		if e.Reason != "" {
			b.WriteString(" [" + clean(e.Reason) + "]")
		}
	}
	if len(e.Secrets) > 0 {
		names := make([]string, len(e.Secrets))
		for i, s := range e.Secrets {
			names[i] = clean(s)
		}
		b.WriteString(" secrets=" + strings.Join(names, ","))
	}
	b.WriteByte('\n')
	return []byte(b.String())
}

// clean quotes s when it holds control or other non-printable characters.
func clean(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// formatBytes renders n with SI units: 999B, 1.2kB, 3.4MB.
func formatBytes(n int64) string {
	if n < 1000 {
		return strconv.FormatInt(n, 10) + "B"
	}
	f := float64(n)
	for _, unit := range []string{"kB", "MB", "GB"} {
		f /= 1000
		if f < 1000 || unit == "GB" {
			return strconv.FormatFloat(f, 'f', 1, 64) + unit
		}
	}
	panic("unreachable")
}

func formatDuration(ms int64) string {
	if ms < 10_000 {
		return strconv.FormatInt(ms, 10) + "ms"
	}
	return strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64) + "s"
}
