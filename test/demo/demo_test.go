package demo

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestStepErrorSaysWhyItStopped(t *testing.T) {
	stopped := errors.New("lab process 42 received terminated")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(stopped)
	err := stepError(ctx, 2, "start the CCM", fmt.Errorf("waiting: %w", ctx.Err()))
	want := "demo step 2 (start the CCM): waiting: context canceled (stopped because: lab process 42 received terminated)"
	if err.Error() != want || !errors.Is(err, stopped) || !errors.Is(err, context.Canceled) {
		t.Errorf("stepError = %q, want %q wrapping both", err, want)
	}

	// A step that failed on its own, or that already names the cause, says it once.
	if got, want := stepError(context.Background(), 3, "x", errors.New("boom")).Error(), "demo step 3 (x): boom"; got != want {
		t.Errorf("stepError = %q, want %q", got, want)
	}
	if got, want := stepError(ctx, 3, "x", stopped).Error(), "demo step 3 (x): lab process 42 received terminated"; got != want {
		t.Errorf("stepError = %q, want %q", got, want)
	}
}
