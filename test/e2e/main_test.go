//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain refuses to run (rather than skip) without root and the network
// tools, so CI cannot pass by silently testing nothing. It builds the real
// binary and the agent, and removes namespaces left by a crashed earlier run.
func TestMain(m *testing.M) {
	if err := preflight(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		os.Exit(1)
	}
	if swept := SweepStaleNamespaces(); len(swept) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: removed stale namespaces from an earlier run: %s\n", strings.Join(swept, " "))
	}
	dir, err := os.MkdirTemp("", "pano-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		os.Exit(1)
	}
	code := 1
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	// Every test deletes its namespaces in t.Cleanup; anything left is a bug.
	if left := SweepStaleNamespaces(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: namespaces left behind by this run (now removed): %s\n", strings.Join(left, " "))
		code = 1
	}
	os.Exit(code)
}

func preflight() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the end-to-end tests need root (network namespaces, iptables); run them as root, e.g. `sudo go test -tags e2e -count=1 ./test/e2e/`")
	}
	var missing []string
	for _, tool := range []string{"ip", "iptables", "ip6tables", "setpriv", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing tools: %s (Debian: apt-get install iproute2 iptables util-linux curl)", strings.Join(missing, ", "))
	}
	return nil
}

// buildBinaries builds panopticon and the agent into dir, readable by every uid.
func buildBinaries(dir string) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	panopticonBin = filepath.Join(dir, "panopticon")
	agentBin = filepath.Join(dir, "agent")
	if err := goBuild(root, agentBin, "./test/e2e/agent", "-tags", "e2e"); err != nil {
		return err
	}
	// A panopticon that does not build fails every test that starts it, with
	// this error, while the testbed's own tests still run.
	panopticonBuildErr = goBuild(root, panopticonBin, "./cmd/panopticon")
	if panopticonBuildErr != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", panopticonBuildErr)
	}
	return nil
}

var panopticonBuildErr error

func goBuild(root, out, pkg string, flags ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append([]string{"build", "-trimpath", "-o", out}, flags...)
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", pkg, err, out)
	}
	return os.Chmod(out, 0o755)
}
