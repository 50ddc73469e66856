package refusal

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite README's table of reasons from the registry")

// Every reason constant is registered exactly once, and nothing else is.
func TestEveryReasonIsRegisteredOnce(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "refusal.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if name.Name == "Header" {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s is not a string literal", name.Name)
				}
				v, _ := strconv.Unquote(lit.Value)
				declared[v] = true
			}
		}
	}
	seen := map[string]bool{}
	for _, r := range List() {
		if seen[r.Token] {
			t.Errorf("%q is registered twice", r.Token)
		}
		seen[r.Token] = true
		if !declared[r.Token] {
			t.Errorf("%q is registered but has no constant", r.Token)
		}
		if r.Meaning == "" || r.Doors == "" || strings.Contains(r.Meaning, "\n") {
			t.Errorf("%q needs a one-line meaning and its doors", r.Token)
		}
	}
	for v := range declared {
		if !seen[v] {
			t.Errorf("constant %q is not registered", v)
		}
	}
}

// README's table is the registry, rendered.
func TestREADMEListsTheRegistry(t *testing.T) {
	const begin, end = "<!-- REASONS:BEGIN -->\n", "<!-- REASONS:END -->"
	path := "../../README.md"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README has no %q … %q block", strings.TrimSpace(begin), end)
	}
	got, want := s[i+len(begin):j], Markdown()
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(s[:i+len(begin)]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README's reasons differ from the registry; run go test ./internal/refusal -update\n got:\n%s\nwant:\n%s", got, want)
}

func TestStatusComesFromTheRegistry(t *testing.T) {
	for _, tc := range []struct {
		token string
		want  int
	}{
		{NotAllowlisted, 403},
		{Connect, 405},
		{UpstreamCert, 502},
		{BodyTooLarge, 413},
		{ClientTimeout, 408},
		{"filter:filters.txt:3", 403},
		{Revoked, 403},          // no HTTP answer of its own
		{"no-such-reason", 403}, // refusals fail closed
	} {
		if got := Status(tc.token); got != tc.want {
			t.Errorf("Status(%q) = %d, want %d", tc.token, got, tc.want)
		}
	}
}

func TestWriteAndResponseSayTheSame(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("Connection", "close")
	status, n := Write(rec, "filter:filters.txt:3", "matched\n a rule")
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	if status != 403 || res.StatusCode != 403 || n != int64(len(body)) {
		t.Errorf("Write: status %d/%d, %d bytes of %d", status, res.StatusCode, n, len(body))
	}
	if string(body) != "panopticon: blocked: matched a rule\n" {
		t.Errorf("body %q: want one line", body)
	}
	if res.Header.Get(Header) != "filter" || res.Header.Get("Connection") != "close" || res.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Errorf("headers %v", res.Header)
	}

	req, _ := http.NewRequest("GET", "https://example.test/", nil)
	resp := Response(req, UpstreamError, "matched\n a rule")
	rbody, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 502 || string(rbody) != string(body) || resp.Header.Get(Header) != UpstreamError || resp.ContentLength != int64(len(rbody)) {
		t.Errorf("Response: %d %q %v", resp.StatusCode, rbody, resp.Header)
	}
}
