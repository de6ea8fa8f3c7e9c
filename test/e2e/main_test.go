// Package e2e proves onprem-lb's features in the lab: onprem-lb installed from its own images
// by its own manifests on real nodes (kubelet and containerd), against a real API server,
// real kube-proxy and real packets, checked the way a user would check them.
package e2e

import (
	"os"
	"testing"

	"github.com/onprem-lb/onprem-lb/test/lab"
)

func TestMain(m *testing.M) {
	lab.RunHelper()
	os.Exit(m.Run())
}
