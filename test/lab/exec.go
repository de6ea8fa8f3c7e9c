package lab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// run executes a command to completion and returns its trimmed standard output. A failure
// carries the command line and what it printed, so the step that called it can say why.
func run(ctx context.Context, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// ip runs `ip` with the given arguments.
func ip(ctx context.Context, args ...string) error {
	_, err := run(ctx, "ip", args...)
	return err
}

// nsRun runs a command inside the network namespace ns.
func nsRun(ctx context.Context, ns string, args ...string) (string, error) {
	return run(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// sysctl sets kernel parameters inside the network namespace ns.
func sysctl(ctx context.Context, ns string, settings ...string) error {
	_, err := nsRun(ctx, ns, append([]string{"sysctl", "-q", "-w"}, settings...)...)
	return err
}
