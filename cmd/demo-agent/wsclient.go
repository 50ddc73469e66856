package main

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// wsClientCommand implements `demo-agent ws [-cafile F] [-insecure] [-servername N] URL MESSAGE`:
// one handshake, one text frame, print the echoed text.
func wsClientCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo-agent ws", flag.ContinueOnError)
	caFile := fs.String("cafile", os.Getenv("SSL_CERT_FILE"), "PEM roots for wss:// (default $SSL_CERT_FILE, else system roots)")
	serverName := fs.String("servername", "", "TLS server name (default: the URL's host)")
	timeout := fs.Duration("timeout", 10*time.Second, "overall deadline")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("want URL MESSAGE")
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil {
		return err
	}
	var tlsConf *tls.Config
	switch u.Scheme {
	case "ws":
	case "wss":
		tlsConf = &tls.Config{ServerName: u.Hostname()}
		if *serverName != "" {
			tlsConf.ServerName = *serverName
		}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return fmt.Errorf("reading -cafile: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("no certificate in %s", *caFile)
			}
			tlsConf.RootCAs = pool
		}
	default:
		return fmt.Errorf("scheme %q: want ws or wss", u.Scheme)
	}
	reply, err := wsRoundTrip(u, tlsConf, fs.Arg(1), *timeout)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, reply)
	return nil
}

func wsRoundTrip(u *url.URL, tlsConf *tls.Config, msg string, timeout time.Duration) (string, error) {
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), map[bool]string{true: "443", false: "80"}[tlsConf != nil])
	}
	d := &net.Dialer{Timeout: timeout}
	var conn net.Conn
	var err error
	if tlsConf != nil {
		conn, err = tls.DialWithDialer(d, "tcp", host, tlsConf)
	} else {
		conn, err = d.Dial("tcp", host)
	}
	if err != nil {
		return "", fmt.Errorf("connecting to %s: %w", host, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))

	keyBytes := make([]byte, 16)
	_, _ = rand.Read(keyBytes)
	key := base64.StdEncoding.EncodeToString(keyBytes)
	path := u.RequestURI()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, u.Host, key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", fmt.Errorf("reading handshake response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("handshake: %s: %s", resp.Status, body)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsAccept(key) {
		return "", fmt.Errorf("handshake: Sec-WebSocket-Accept %q, want %q", got, wsAccept(key))
	}
	if err := writeFrame(conn, wsFrame{fin: true, opcode: opText, payload: []byte(msg)}, newMask()); err != nil {
		return "", err
	}
	for {
		f, err := readFrame(br, false)
		if err != nil {
			return "", fmt.Errorf("reading echo: %w", err)
		}
		switch f.opcode {
		case opText, opBinary:
			_ = writeFrame(conn, wsFrame{fin: true, opcode: opClose, payload: closePayload(1000, "")}, newMask())
			return string(f.payload), nil
		case opClose:
			return "", errors.New("server closed the connection")
		}
	}
}
