package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A bad pool file is reported before anything connects: with an API server that cannot be
// reached, the error is the pool file's, not an authentication failure.
func TestBadPoolFileFirst(t *testing.T) {
	dir := t.TempDir()
	pools := filepath.Join(dir, "pools.yaml")
	kubeconfig := filepath.Join(dir, "kubeconfig")
	for path, doc := range map[string]string{
		pools: "pools:\n- name: lan\n  addresses: [198.18.0.1/24]\n",
		kubeconfig: `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://198.18.255.254:6443"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`,
	} {
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := newCommand(make(chan struct{}), &leaseReleaser{})
	cmd.SetArgs([]string{"--cloud-provider=onprem", "--cloud-config=" + pools, "--kubeconfig=" + kubeconfig,
		"--secure-port=0"})
	cmd.SilenceUsage = true
	began := time.Now()
	err := cmd.Execute()
	want := "--cloud-config: config: " + pools + ": pools[0].addresses[0]"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Execute() = %v, want an error starting %q", err, want)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("the pool file error took %s: something connected first", d)
	}
}
