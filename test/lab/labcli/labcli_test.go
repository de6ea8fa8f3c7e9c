package labcli

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSignalContextNamesTheSignal(t *testing.T) {
	ctx, stop := signalContext(context.Background())
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not cancel the context")
	}
	if cause := context.Cause(ctx); cause == nil || !strings.Contains(cause.Error(), "received terminated") {
		t.Errorf("context.Cause = %v, want it to name SIGTERM", cause)
	}
}
