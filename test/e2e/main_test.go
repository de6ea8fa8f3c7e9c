// Package e2e proves onprem-lb's features in the lab: our real binaries against a real API
// server, real kube-proxy and real packets, checked the way a user would check them.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// binDir holds onprem-lb's binaries, built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	lab.RunHelper()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "onprem-lb-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/...")
	build.Dir, build.Stdout, build.Stderr = labtest.RepoPath(), os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build onprem-lb binaries:", err)
		return 1
	}
	binDir = dir
	return m.Run()
}
