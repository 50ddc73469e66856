package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
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
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o644); err != nil {
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
	cert *x509.Certificate
	key  *ecdsa.PrivateKey

	mu    sync.Mutex
	leafs map[string]*tls.Certificate
}

func newCA() (*testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "panopticon docker e2e fake upstream CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &testCA{cert: cert, key: key, leafs: map[string]*tls.Certificate{}}, nil
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}
	ca.leafs[name] = c
	log.Printf("MINT name=%s serial=%s", name, strconv.Quote(tmpl.SerialNumber.String()))
	return c, nil
}
