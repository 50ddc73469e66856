package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadSettings(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    settings
		wantErr string
	}{
		{name: "defaults", want: settings{listen: "127.0.0.1", httpPort: 8443, wsPort: 12001, netLossAfter: 10 * time.Second}},
		{name: "overrides", env: map[string]string{"APP_HTTP_PORT": "9000", "APP_WS_PORT": "9001", "APP_LISTEN_ADDR": "0.0.0.0", "NETWORK_LOSS_EXIT_AFTER": "0"},
			want: settings{listen: "0.0.0.0", httpPort: 9000, wsPort: 9001}},
		{name: "bad port", env: map[string]string{"APP_HTTP_PORT": "http"}, wantErr: "APP_HTTP_PORT"},
		{name: "port out of range", env: map[string]string{"APP_WS_PORT": "70000"}, wantErr: "APP_WS_PORT"},
		{name: "same ports", env: map[string]string{"APP_HTTP_PORT": "9000", "APP_WS_PORT": "9000"}, wantErr: "both 9000"},
		{name: "bad duration", env: map[string]string{"NETWORK_LOSS_EXIT_AFTER": "soon"}, wantErr: "NETWORK_LOSS_EXIT_AFTER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadSettings(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestHTTPHandler(t *testing.T) {
	srv := httptest.NewServer(httpHandler())
	defer srv.Close()

	t.Run("hello", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "hello") {
			t.Fatalf("GET / = %d %q", resp.StatusCode, body)
		}
	})
	t.Run("unknown path", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/nope")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET /nope = %d, want 404", resp.StatusCode)
		}
	})
	t.Run("echo", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/echo?x=1", strings.NewReader("ping"))
		req.Header.Set("Authorization", "Bearer PLACEHOLDER_SECRET_VALUE_OPENAI")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got echoReply
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if got.Method != "POST" || got.Path != "/echo" || got.Query != "x=1" || got.Body != "ping" ||
			got.Headers["Authorization"][0] != "Bearer PLACEHOLDER_SECRET_VALUE_OPENAI" {
			t.Fatalf("echo = %+v", got)
		}
	})
	t.Run("echo body too large", func(t *testing.T) {
		resp, err := http.Post(srv.URL+"/echo", "text/plain", bytes.NewReader(make([]byte, maxEchoBody+1)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", resp.StatusCode)
		}
	})
}

func TestWSAcceptRFCExample(t *testing.T) {
	// RFC 6455 §1.3.
	if got := wsAccept("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("wsAccept = %q", got)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536} {
		for _, masked := range []bool{false, true} {
			var buf bytes.Buffer
			payload := bytes.Repeat([]byte{'a'}, n)
			var mask []byte
			if masked {
				mask = newMask()
			}
			if err := writeFrame(&buf, wsFrame{fin: true, opcode: opBinary, payload: payload}, mask); err != nil {
				t.Fatal(err)
			}
			f, err := readFrame(bufio.NewReader(&buf), masked)
			if err != nil {
				t.Fatalf("n=%d masked=%v: %v", n, masked, err)
			}
			if !f.fin || f.opcode != opBinary || !bytes.Equal(f.payload, payload) {
				t.Fatalf("n=%d masked=%v: got fin=%v op=%d len=%d", n, masked, f.fin, f.opcode, len(f.payload))
			}
		}
	}
}

func TestReadFrameRejects(t *testing.T) {
	tests := []struct {
		name   string
		frame  []byte
		masked bool
		want   string
	}{
		{"unmasked client frame", []byte{0x81, 0x01, 'x'}, true, "masked=false"},
		{"reserved bits", []byte{0xC1, 0x81, 0, 0, 0, 0, 'x'}, true, "reserved"},
		{"long control frame", []byte{0x89, 0xFE, 0x00, 0x7E}, true, "control frame"},
		{"fragmented control frame", []byte{0x09, 0x80, 0, 0, 0, 0}, true, "control frame"},
		{"oversized", []byte{0x82, 0xFF, 0, 0, 0, 0, 0x7f, 0, 0, 0}, true, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readFrame(bufio.NewReader(bytes.NewReader(tt.frame)), tt.masked)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestWebSocketEcho(t *testing.T) {
	srv := httptest.NewServer(wsHandler(slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	u, _ := url.Parse(strings.Replace(srv.URL, "http://", "ws://", 1) + "/chat")

	got, err := wsRoundTrip(u, nil, "hello over ws", 5*time.Second)
	if err != nil || got != "hello over ws" {
		t.Fatalf("echo = %q, %v", got, err)
	}

	t.Run("ping gets pong", func(t *testing.T) {
		conn, br := rawUpgrade(t, srv.Listener.Addr().String())
		defer conn.Close()
		if err := writeFrame(conn, wsFrame{fin: true, opcode: opPing, payload: []byte("p")}, newMask()); err != nil {
			t.Fatal(err)
		}
		f, err := readFrame(br, false)
		if err != nil || f.opcode != opPong || string(f.payload) != "p" {
			t.Fatalf("got %+v, %v; want pong", f, err)
		}
	})
	t.Run("plain GET is refused", func(t *testing.T) {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("status %d, want 426", resp.StatusCode)
		}
	})
}

func TestWSClientCommand(t *testing.T) {
	srv := httptest.NewTLSServer(wsHandler(slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeCertPEM(t, caFile, srv.Certificate().Raw)
	u := strings.Replace(srv.URL, "https://", "wss://", 1)

	var out bytes.Buffer
	if err := wsClientCommand([]string{"-cafile", caFile, "-servername", "example.com", u, "hi"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "hi\n" {
		t.Fatalf("output %q", out.String())
	}
	if err := wsClientCommand([]string{"-cafile", "", u, "hi"}, io.Discard); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
}

func TestServeAndShutdown(t *testing.T) {
	httpPort, wsPort := freePort(t), freePort(t)
	env := map[string]string{"APP_HTTP_PORT": httpPort, "APP_WS_PORT": wsPort, "NETWORK_LOSS_EXIT_AFTER": "0"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), func(k string) string { return env[k] })
	}()

	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + httpPort + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	u, _ := url.Parse("ws://127.0.0.1:" + wsPort + "/")
	if got, err := wsRoundTrip(u, nil, "x", 5*time.Second); err != nil || got != "x" {
		t.Fatalf("ws echo = %q, %v", got, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestWatchNetwork(t *testing.T) {
	dir := t.TempDir()
	mustMkdir := func(p string) {
		if err := os.Mkdir(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustMkdir("lo")

	t.Run("never had a network", func(t *testing.T) {
		if err := watchNetwork(context.Background(), dir, time.Millisecond, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("loses it", func(t *testing.T) {
		mustMkdir("eth0")
		errc := make(chan error, 1)
		go func() { errc <- watchNetwork(context.Background(), dir, 30*time.Millisecond, 5*time.Millisecond) }()
		time.Sleep(20 * time.Millisecond)
		select {
		case err := <-errc:
			t.Fatalf("returned %v while eth0 exists", err)
		default:
		}
		if err := os.Remove(filepath.Join(dir, "eth0")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if err == nil || !strings.Contains(err.Error(), "network lost") {
				t.Fatalf("err = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("did not notice the loss")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		mustMkdir("eth1")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := watchNetwork(ctx, dir, time.Hour, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	})
}

func rawUpgrade(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return conn, br
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func TestWaitForFirewallWaitsForOurNamespace(t *testing.T) {
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Skip("no /proc/self/ns/net:", err)
	}
	file := filepath.Join(t.TempDir(), "firewall-netns")
	// Another namespace's firewall does not count.
	os.WriteFile(file, []byte("net:[1]\n"), 0o644)
	if err := waitForFirewall(context.Background(), file, 300*time.Millisecond); err == nil {
		t.Fatal("started although the file names another namespace")
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		os.WriteFile(file, []byte(own+"\n"), 0o644)
	}()
	if err := waitForFirewall(context.Background(), file, 5*time.Second); err != nil {
		t.Fatalf("did not start once the file named our namespace: %v", err)
	}
}
