package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The overlay names each image's tag as a string, also a tag of digits only (git describe
// of a commit whose short hash is all digits).
func TestOverlayTagIsAString(t *testing.T) {
	k := overlay("../manifests", map[string]string{"ghcr.io/onprem-lb/onprem-speaker": "onprem-lb.local/onprem-speaker:6165435"})
	// Untyped, as kustomize reads it: an unquoted 6165435 would be a number.
	var got struct {
		Images []map[string]any
	}
	if err := yaml.Unmarshal([]byte(k), &got); err != nil {
		t.Fatalf("%v\n%s", err, k)
	}
	if len(got.Images) != 1 || got.Images[0]["newTag"] != "6165435" || got.Images[0]["newName"] != "onprem-lb.local/onprem-speaker" {
		t.Errorf("images %#v, want onprem-lb.local/onprem-speaker with the tag \"6165435\" (a string)\n%s", got.Images, k)
	}
}

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

func TestShippedLeaderElection(t *testing.T) {
	got, err := ShippedLeaderElection("../..")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--leader-elect-lease-duration=5s", "--leader-elect-renew-deadline=4s", "--leader-elect-retry-period=1s"}
	if !slices.Equal(got, want) {
		t.Errorf("ShippedLeaderElection = %v, want %v", got, want)
	}

	repo := t.TempDir()
	if err := os.Mkdir(filepath.Join(repo, "manifests"), 0o755); err != nil {
		t.Fatal(err)
	}
	deployment := "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n      - name: ccm\n        args: [--leader-elect=true]\n"
	if err := os.WriteFile(filepath.Join(repo, "manifests", "ccm-deployment.yaml"), []byte(deployment), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ShippedLeaderElection(repo); err == nil || !strings.Contains(err.Error(), "want all three") {
		t.Errorf("ShippedLeaderElection without timings: err = %v, want one saying all three are wanted", err)
	}
}
