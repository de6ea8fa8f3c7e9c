// Package labtest starts labs from Go tests: one call, cleanup registered, and the rule that a
// lab which cannot start fails the test under CI=true and skips it only on a developer machine
// that cannot run one (not root, or no control-plane binaries).
package labtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/onprem-lb/onprem-lb/test/lab"
)

// Start brings up a lab for t and stops it when t ends. Test binaries that use it must call
// lab.RunHelper at the top of TestMain.
func Start(t testing.TB, opts lab.Options) *lab.Lab {
	t.Helper()
	if reason := Unavailable(); reason != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("lab cannot start under CI=true: %s", reason)
		}
		t.Skipf("no lab on this machine: %s (make test provides one)", reason)
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	l, err := lab.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dir := filepath.Join(os.TempDir(), "onprem-lb-lab-logs", strings.ReplaceAll(t.Name(), "/", "_"))
			if err := l.SaveLogs(dir); err != nil {
				t.Logf("save lab logs: %v", err)
			} else {
				t.Logf("lab logs saved in %s", dir)
			}
		}
		l.Stop()
	})
	t.Logf("lab up in %v", time.Since(began).Round(time.Millisecond))
	return l
}

// Unavailable says why this machine cannot run a lab, or "" if it can.
func Unavailable() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if os.Getenv(lab.EnvToolsBin) == "" {
		return lab.EnvToolsBin + " is not set"
	}
	return ""
}

// NeedRoot is for tests that make network namespaces of their own: it returns if this is
// root and every tool is installed; otherwise it fails the test under CI=true (CI runs as
// root and installs the tools) and skips it on a developer machine, saying why.
func NeedRoot(t testing.TB, tools ...string) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "not root"
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil && reason == "" {
			reason = tool + " not installed (make test installs it)"
		}
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("network namespace test under CI=true: %s", reason)
	}
	t.Skipf("network namespace test: %s", reason)
}

// Node returns the lab node named name, and ends the test if there is none.
func Node(t testing.TB, l *lab.Lab, name string) *lab.Node {
	t.Helper()
	n := l.Node(name)
	if n == nil {
		t.Fatalf("no lab node %q", name)
	}
	return n
}

// EnvImages names the directory of the OCI archives `make images lab-images` wrote; make
// lab-test sets it.
const EnvImages = "ONPREM_LB_IMAGES"

// Images returns the OCI archives in $ONPREM_LB_IMAGES, and ends the test if there are none.
func Images(t testing.TB) []string {
	t.Helper()
	dir := os.Getenv(EnvImages)
	archives, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if dir == "" || err != nil || len(archives) == 0 {
		t.Fatalf("no image archives in %s=%q (%v): run `make images lab-images`, or the tests through `make lab-test`", EnvImages, dir, err)
	}
	return archives
}

// RepoPath returns a path inside the repository (the root with no parts).
func RepoPath(parts ...string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(append([]string{filepath.Dir(file), "..", "..", ".."}, parts...)...)
}
