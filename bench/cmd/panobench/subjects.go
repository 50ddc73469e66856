package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Subject names, in the order tables list them.
const (
	subjDirect = "direct"
	subjPano   = "panopticon"
	subjBase   = "baseline" // panopticon built from another revision (BENCH_BASELINE)
	subjMitm   = "mitmproxy"
	subjSquid  = "squid"
)

// The secret panopticon swaps into uploads to secret.test. The real value
// is longer than the placeholder, so the upstream's byte count proves the
// substitution happened.
const (
	secretName  = "PLACEHOLDER_SECRET_VALUE_BENCH"
	secretValue = "sk-bench-0123456789abcdefghijklmnopqrstuvwxyz-REAL"
)

// subject is one way of reaching the upstream from a pod.
type subject struct {
	name   string
	pod    string
	caFile string // what clients in the pod trust
	dir    string
	cmd    *exec.Cmd
	done   chan struct{}
	start  func(s *subject) error
}

func (s *subject) pid() int {
	if s.cmd == nil || s.cmd.Process == nil || s.exited() {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *subject) exited() bool {
	if s.done == nil {
		return true
	}
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// launch starts argv in the subject's pod with output to dir/<name>.log.
// `ip netns exec` and setpriv exec, so the pid is the proxy's own.
func (s *subject) launch(env []string, argv ...string) error {
	logf, err := os.OpenFile(filepath.Join(s.dir, s.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.cmd = exec.Command("ip", append([]string{"netns", "exec", s.pod}, argv...)...)
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.name, err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	return nil
}

func (s *subject) stop() {
	if s.exited() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// waitReady polls ready (every 200 ms, at most 30 s) while the process lives.
func (s *subject) waitReady(ready func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if s.cmd != nil && s.exited() {
			return fmt.Errorf("%s exited during start-up; see %s", s.name, filepath.Join(s.dir, s.name+".log"))
		}
		if last = ready(); last == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within 30s: %v (log: %s)", s.name, last, filepath.Join(s.dir, s.name+".log"))
}

// listening reports whether something listens on TCP port inside pod.
func listening(pod string, port int) error {
	out, err := exec.Command("ip", "netns", "exec", pod, "ss", "-Hltn", "sport = :"+strconv.Itoa(port)).Output()
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(out)) == "" {
		return fmt.Errorf("nothing listens on :%d", port)
	}
	return nil
}

func baseEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp", "LANG=C.UTF-8"}
}

// ---- panopticon ----

// panoOpts configure one panopticon start.
type panoOpts struct {
	bin            string
	upstreamCAFile string
	entries        int // allowlist size (>= 3)
}

// writeAllowlist writes the three bench names and filler up to n entries
// (a third of them wildcards), so lookups hit a map of realistic size.
func writeAllowlist(path string, n int) error {
	var b strings.Builder
	b.WriteString("# panobench\n" + benchHost + "\n" + secretHost + "\n" + noResumeHost + "\n")
	for i := 3; i < n; i++ {
		if i%3 == 0 {
			fmt.Fprintf(&b, "*.w%d.filler-%d.example\n", i, i%97)
		} else {
			fmt.Fprintf(&b, "api%d.filler-%d.example\n", i, i%97)
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// isPanopticon reports the subjects that run panopticon (this build or the
// baseline): they swap placeholders and answer DNS.
func isPanopticon(s *subject) bool { return s.name == subjPano || s.name == subjBase }

func newPanopticon(name, pod, dir string, o *panoOpts) *subject {
	s := &subject{name: name, pod: pod, dir: dir}
	s.start = func(s *subject) error {
		base := filepath.Join(dir, name)
		if err := os.MkdirAll(base, 0o755); err != nil {
			return err
		}
		allow := filepath.Join(base, "allowlist.txt")
		if err := writeAllowlist(allow, o.entries); err != nil {
			return err
		}
		env := append(baseEnv(),
			"ALLOWLIST_FILE="+allow,
			"UPSTREAM_DNS="+dnsIP+":53",
			"UPSTREAM_CA_FILE="+o.upstreamCAFile,
			"CA_DIR="+filepath.Join(base, "ca"),
			"CA_EXPORT_DIR="+filepath.Join(base, "export"),
			"LOG_DIR="+filepath.Join(base, "log"),
			"PROXY_UID=1337", "PROXY_GID=1337",
			secretName+"="+secretValue,
			"PLACEHOLDER_SECRET_DOMAINS_BENCH="+secretHost,
		)
		if err := s.launch(env, o.bin, "run"); err != nil {
			return err
		}
		s.caFile = filepath.Join(base, "export", "ca-cert.pem")
		return s.waitReady(func() error {
			hc := exec.Command("ip", "netns", "exec", pod, o.bin, "healthcheck")
			hc.Env = env
			if out, err := hc.CombinedOutput(); err != nil {
				return fmt.Errorf("healthcheck: %v: %s", err, strings.TrimSpace(string(out)))
			}
			return nil
		})
	}
	return s
}

// ---- mitmproxy ----

const mitmUID = 1338

func newMitmproxy(pod, dir, upstreamCA string) *subject {
	s := &subject{name: subjMitm, pod: pod, dir: dir}
	s.start = func(s *subject) error {
		conf := filepath.Join(dir, "mitmproxy")
		if err := os.MkdirAll(conf, 0o755); err != nil {
			return err
		}
		if err := os.Chown(conf, mitmUID, mitmUID); err != nil {
			return err
		}
		// Its own upstream connections (uid 1338) must not be redirected back to it.
		if err := iptablesRedirect(pod, "--uid-owner", strconv.Itoa(mitmUID), 8080); err != nil {
			return err
		}
		if err := s.launch(baseEnv(), "setpriv", "--reuid="+strconv.Itoa(mitmUID), "--regid="+strconv.Itoa(mitmUID), "--clear-groups", "--",
			"mitmdump", "--mode", "transparent", "--listen-port", "8080", "-q",
			"--set", "confdir="+conf,
			"--set", "ssl_insecure=false",
			"--set", "ssl_verify_upstream_trusted_ca="+upstreamCA,
			"--set", "stream_large_bodies=1",
			"--set", "connection_strategy=eager",
		); err != nil {
			return err
		}
		s.caFile = filepath.Join(conf, "mitmproxy-ca-cert.pem")
		return s.waitReady(func() error {
			if _, err := os.Stat(s.caFile); err != nil {
				return err
			}
			return listening(pod, 8080)
		})
	}
	return s
}

// iptablesRedirect sends the pod's TCP 443 to port, except the proxy's own
// traffic (owner match).
func iptablesRedirect(pod, ownerFlag, owner string, port int) error {
	_ = inNS(pod, "iptables", "-t", "nat", "-F", "OUTPUT")
	return inNS(pod, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "443",
		"-m", "owner", "!", ownerFlag, owner, "-j", "REDIRECT", "--to-ports", strconv.Itoa(port))
}

// ---- squid ----

func newSquid(pod, dir, upstreamCA string) *subject {
	s := &subject{name: subjSquid, pod: pod, dir: dir}
	s.start = func(s *subject) error {
		u, err := user.Lookup("proxy")
		if err != nil {
			return fmt.Errorf("squid runs as user proxy: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		base := filepath.Join(dir, "squid")
		if err := os.MkdirAll(base, 0o755); err != nil {
			return err
		}
		ca, err := newCA("panobench squid ssl-bump CA")
		if err != nil {
			return err
		}
		key, err := ca.KeyPEM()
		if err != nil {
			return err
		}
		caCert, caKey := filepath.Join(base, "ca.pem"), filepath.Join(base, "ca.key")
		if err := os.WriteFile(caCert, ca.CertPEM(), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(caKey, key, 0o600); err != nil {
			return err
		}
		db := filepath.Join(base, "ssl_db")
		_ = os.RemoveAll(db)
		if err := run(context.Background(), "/usr/lib/squid/security_file_certgen", "-c", "-s", db, "-M", "16MB"); err != nil {
			return err
		}
		for _, p := range []string{base, db, caKey} {
			if err := chownR(p, uid, gid); err != nil {
				return err
			}
		}
		conf := filepath.Join(base, "squid.conf")
		if err := os.WriteFile(conf, []byte(squidConf(base, caCert, caKey, db, upstreamCA)), 0o644); err != nil {
			return err
		}
		if err := iptablesRedirect(pod, "--uid-owner", u.Uid, 3129); err != nil {
			return err
		}
		if err := s.launch(baseEnv(), "squid", "-N", "-f", conf); err != nil {
			return err
		}
		s.caFile = caCert
		return s.waitReady(func() error { return listening(pod, 3129) })
	}
	return s
}

func chownR(root string, uid, gid int) error {
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// squidConf is an administrator's ssl-bump interception setup: bump
// everything, verify upstream certificates against the test CA, cache nothing.
func squidConf(base, caCert, caKey, db, upstreamCA string) string {
	return strings.Join([]string{
		"http_port 127.0.0.1:3128",
		"https_port 3129 intercept ssl-bump tls-cert=" + caCert + " tls-key=" + caKey +
			" generate-host-certificates=on dynamic_cert_mem_cache_size=16MB",
		"sslcrtd_program /usr/lib/squid/security_file_certgen -s " + db + " -M 16MB",
		"sslcrtd_children 8 startup=2 idle=1",
		"acl step1 at_step SslBump1",
		"ssl_bump peek step1",
		"ssl_bump bump all",
		"tls_outgoing_options cafile=" + upstreamCA,
		"http_access allow all",
		"cache deny all",
		"cache_mem 8 MB",
		"dns_nameservers " + dnsIP,
		"cache_effective_user proxy",
		"pid_filename " + filepath.Join(base, "squid.pid"),
		"cache_log " + filepath.Join(base, "cache.log"),
		"access_log none",
		"coredump_dir " + base,
		"shutdown_lifetime 1 seconds",
		"max_filedescriptors 65536",
		"visible_hostname panobench",
		"",
	}, "\n")
}

// ---- direct ----

func newDirect(pod, upstreamCA string) *subject {
	return &subject{name: subjDirect, pod: pod, caFile: upstreamCA, start: func(*subject) error { return nil }}
}
