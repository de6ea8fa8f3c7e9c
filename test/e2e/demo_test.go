package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// TestDemo runs what `make demo` runs, step by step: every step must succeed (IPs assigned
// and announced, every web VIP answering the client, the VIP back after its node died).
func TestDemo(t *testing.T) {
	l := labtest.Start(t, lab.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := demo.Run(ctx, l, demo.Options{Repo: repoPath(), BinDir: binDir, Report: t.Logf}); err != nil {
		t.Fatal(err)
	}
}
