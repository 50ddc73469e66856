package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultsAreValid(t *testing.T) {
	c, err := FromMap(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.InboundHTTPSPort != 443 || c.TransparentPort != 8080 || c.DNSPort != 5353 || c.ProxyUID != 1337 || c.AllowlistFile != "/etc/panopticon/allowlist.txt" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		name string
		vars map[string]string
		want []string
	}{
		{"not a number", map[string]string{"DNS_PORT": "fifty"}, []string{"DNS_PORT"}},
		{"port clash names both", map[string]string{"DASHBOARD_PORT": "8080"}, []string{"DASHBOARD_PORT", "TRANSPARENT_PORT", "8080"}},
		{"out of range", map[string]string{"APP_HTTP_PORT": "70000"}, []string{"APP_HTTP_PORT"}},
		{"root uid", map[string]string{"PROXY_UID": "0"}, []string{"PROXY_UID"}},
		{"bad cidr", map[string]string{"ALLOW_PRIVATE_CIDRS": "10.0.0.0/8, nope"}, []string{"ALLOW_PRIVATE_CIDRS", "nope"}},
		{"bad bool", map[string]string{"LOG_COMPRESS": "maybe"}, []string{"LOG_COMPRESS"}},
		{"missing CA file", map[string]string{"UPSTREAM_CA_FILE": "/nonexistent/ca.pem"}, []string{"UPSTREAM_CA_FILE"}},
		{"dns on 53", map[string]string{"DNS_PORT": "53"}, []string{"DNS_PORT=53"}},
		{"dashboard local uid is the proxy's", map[string]string{"DASHBOARD_LOCAL_UIDS": "0,1337"}, []string{"DASHBOARD_LOCAL_UIDS", "PROXY_UID"}},
		{"dashboard local uid out of range", map[string]string{"DASHBOARD_LOCAL_UIDS": "99999999999"}, []string{"DASHBOARD_LOCAL_UIDS"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromMap(tc.vars)
			if err == nil {
				err = c.Validate()
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestEnvFileIsReadButEnvironmentWins(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, ".env")
	content := "DNS_PORT=5454\nDASHBOARD_PORT=9000\nPLACEHOLDER_SECRET_VALUE_TEST='sk-test-FAKE-$notexpanded'\n"
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load([]string{"DASHBOARD_PORT=9100"}, f)
	if err != nil {
		t.Fatal(err)
	}
	if c.DNSPort != 5454 || c.DashboardPort != 9100 {
		t.Fatalf("DNS_PORT=%d DASHBOARD_PORT=%d, want 5454 from the file and 9100 from the environment", c.DNSPort, c.DashboardPort)
	}
	if got := c.Secrets["PLACEHOLDER_SECRET_VALUE_TEST"]; got != "sk-test-FAKE-$notexpanded" {
		t.Fatalf("single-quoted secret was altered")
	}
	if _, ok := os.LookupEnv("PLACEHOLDER_SECRET_VALUE_TEST"); ok {
		t.Fatal("the env file leaked into the process environment")
	}
}

func TestMissingEnvFileIsAnError(t *testing.T) {
	_, err := Load(nil, "/nonexistent/.env")
	if err == nil || !strings.Contains(err.Error(), "--env-file") {
		t.Fatalf("err = %v", err)
	}
}

func TestUpstreamDNSFallsBackToResolvConf(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	os.WriteFile(rc, []byte("# docker\nsearch x\nnameserver 127.0.0.11\nnameserver 1.1.1.1\n"), 0o644)
	c, _ := FromMap(nil)
	got, err := c.ResolveUpstreamDNS(rc)
	if err != nil || got != "127.0.0.11:53" {
		t.Fatalf("got %q, %v", got, err)
	}
	c.UpstreamDNS = "198.51.100.1"
	if got, _ := c.ResolveUpstreamDNS(rc); got != "198.51.100.1:53" {
		t.Fatalf("explicit UPSTREAM_DNS without port: %q", got)
	}
	os.WriteFile(rc, []byte("search x\n"), 0o644)
	c.UpstreamDNS = ""
	if _, err := c.ResolveUpstreamDNS(rc); err == nil || !strings.Contains(err.Error(), "UPSTREAM_DNS") {
		t.Fatalf("no nameserver: err = %v", err)
	}
}

func TestUpstreamDNSBehindDockersEmbeddedResolver(t *testing.T) {
	cases := []struct {
		name, conf, want string
	}{
		{"forwarding from the container namespace: ask the external server", "nameserver 127.0.0.11\noptions ndots:0\n# ExtServers: [192.0.2.53 198.51.100.53]\n", "192.0.2.53:53"},
		{"host loopback resolver: Docker forwards from the host, no loop", "nameserver 127.0.0.11\n# ExtServers: [host(127.0.0.53)]\n", "127.0.0.11:53"},
		{"no ExtServers line", "nameserver 127.0.0.11\n", "127.0.0.11:53"},
		{"not Docker", "nameserver 198.51.100.1\n# ExtServers: [192.0.2.53]\n", "198.51.100.1:53"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := filepath.Join(t.TempDir(), "resolv.conf")
			os.WriteFile(rc, []byte(tc.conf), 0o644)
			c, _ := FromMap(nil)
			got, err := c.ResolveUpstreamDNS(rc)
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
