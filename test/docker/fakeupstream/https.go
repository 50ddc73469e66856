package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/panopticon-dev/panopticon/internal/testpki"
)

func runHTTPS(args []string) error {
	fs := flag.NewFlagSet("https", flag.ContinueOnError)
	caDir := fs.String("ca-dir", "/ca", "where ca.pem is written")
	addr := fs.String("listen", ":443", "HTTPS address (all families)")
	canaryTCP := fs.String("canary-tcp", "", "comma-separated TCP ports that log any connection")
	canaryUDP := fs.String("canary-udp", "", "comma-separated UDP ports that log any datagram")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log.SetFlags(0)
	log.SetOutput(os.Stdout)

	ca, err := newCA()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*caDir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(*caDir, ".ca.pem.tmp")
	if err := os.WriteFile(tmp, ca.CertPEM(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(*caDir, "ca.pem")); err != nil {
		return err
	}

	for _, p := range splitPorts(*canaryTCP) {
		ln, err := net.Listen("tcp", ":"+p)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				log.Printf("CANARY tcp port=%s from=%s", p, c.RemoteAddr())
				_ = c.Close()
			}
		}()
	}
	for _, p := range splitPorts(*canaryUDP) {
		pc, err := net.ListenPacket("udp", ":"+p)
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				log.Printf("CANARY udp port=%s from=%s bytes=%d", p, from, n)
			}
		}()
	}

	srv := &http.Server{
		Addr:              *addr,
		Handler:           logRequests(upstreamHandler()),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{GetCertificate: ca.leafFor},
	}
	log.Printf("READY https=%s ca=%s", *addr, filepath.Join(*caDir, "ca.pem"))
	return srv.ListenAndServeTLS("", "")
}

func splitPorts(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

type upstreamEcho struct {
	SNI        string              `json:"sni"`
	Method     string              `json:"method"`
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	Query      string              `json:"query,omitempty"`
	Headers    map[string][]string `json:"headers"`
	AuthSHA256 string              `json:"auth_sha256"`
	Body       string              `json:"body"`
	RemoteAddr string              `json:"remote_addr"`
}

func upstreamHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from fake upstream %s\n", r.TLS.ServerName)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(upstreamEcho{
			SNI: r.TLS.ServerName, Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery,
			Headers: r.Header, AuthSHA256: sha256Hex(r.Header.Get("Authorization")),
			Body: string(body), RemoteAddr: r.RemoteAddr,
		})
	})
	return mux
}

func sha256Hex(s string) string {
	if s == "" {
		return ""
	}
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Printf("REQUEST sni=%s host=%s method=%s path=%s from=%s auth_sha256=%s",
			r.TLS.ServerName, r.Host, r.Method, r.URL.Path, r.RemoteAddr, sha256Hex(r.Header.Get("Authorization")))
		next.ServeHTTP(w, r)
	})
}

// testCA mints one leaf per server name, on demand.
type testCA struct {
	*testpki.CA

	mu    sync.Mutex
	leafs map[string]*tls.Certificate
}

func newCA() (*testCA, error) {
	ca, err := testpki.New("panopticon docker e2e fake upstream CA", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	return &testCA{CA: ca, leafs: map[string]*tls.Certificate{}}, nil
}

func (ca *testCA) leafFor(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
	if name == "" {
		name = "no-sni.invalid"
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c, ok := ca.leafs[name]; ok {
		return c, nil
	}
	var names []string
	var ips []net.IP
	if ip := net.ParseIP(name); ip != nil {
		ips = []net.IP{ip}
	} else {
		names = []string{name}
	}
	c, err := ca.Leaf(names, ips)
	if err != nil {
		return nil, err
	}
	c.Certificate = append(c.Certificate, ca.Cert.Raw)
	ca.leafs[name] = &c
	log.Printf("MINT name=%s serial=%s", name, strconv.Quote(c.Leaf.SerialNumber.String()))
	return &c, nil
}
