package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWaitStop(t *testing.T) {
	tests := []struct {
		name      string
		signals   []os.Signal
		want      os.Signal
		wantReaps int
	}{
		{"SIGTERM stops", []os.Signal{syscall.SIGTERM}, syscall.SIGTERM, 0},
		{"SIGINT stops", []os.Signal{syscall.SIGINT}, syscall.SIGINT, 0},
		{"each SIGCHLD reaps, then SIGTERM stops", []os.Signal{syscall.SIGCHLD, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGCHLD}, syscall.SIGTERM, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signals := make(chan os.Signal, len(tt.signals))
			for _, s := range tt.signals {
				signals <- s
			}
			reaps := 0
			got := waitStop(signals, func() { reaps++ })
			if diff := cmp.Diff([]any{tt.want, tt.wantReaps}, []any{got, reaps}); diff != "" {
				t.Errorf("waitStop(%v): (signal, reaps) (-want +got):\n%s", tt.signals, diff)
			}
		})
	}
}

// TestReap proves that reap collects a child that has ended, so that no zombie is left.
func TestReap(t *testing.T) {
	pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	stat := "/proc/" + strconv.Itoa(pid) + "/stat"
	deadline := time.Now().Add(10 * time.Second)
	for state(t, stat) != "Z" {
		if time.Now().After(deadline) {
			t.Fatalf("child %d never ended", pid)
		}
		time.Sleep(5 * time.Millisecond) // polling the child's state, not timing it
	}
	reap()
	if _, err := os.Stat(stat); !os.IsNotExist(err) {
		t.Errorf("child %d still exists after reap (state %q)", pid, state(t, stat))
	}
}

// state returns the state letter of /proc/<pid>/stat, "" once the process is gone.
func state(t *testing.T, stat string) string {
	t.Helper()
	data, err := os.ReadFile(stat)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(data), ") ")
	return after[:1]
}
