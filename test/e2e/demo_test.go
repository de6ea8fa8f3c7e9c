package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// TestDemo runs what `make demo` runs, step by step, with our images on real nodes: every step
// must succeed (onprem-lb's pods Ready and the nodes initialized, IPs assigned and announced,
// every web VIP answering the client, the VIP back after its node died).
func TestDemo(t *testing.T) {
	images := labtest.Images(t)
	l := labtest.Start(t, lab.Options{Kubelets: true, Images: images})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := demo.Run(ctx, l, demo.Options{Repo: labtest.RepoPath(), Images: images, Report: t.Logf}); err != nil {
		t.Fatal(err)
	}
}
