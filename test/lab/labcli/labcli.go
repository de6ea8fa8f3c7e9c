// Package labcli is the lab command line: `up` starts a lab in a background process that
// keeps it running (and its nodes heartbeating) and returns once it is ready; `down` stops
// that process and removes everything the lab made.
package labcli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/onprem-lb/onprem-lb/test/lab"
)

// Options are the lab's options plus the arguments to pass on to the background process.
type Options struct {
	Lab  lab.Options
	Args []string
}

// serveLog is where the background process writes its log; it outlives the lab directory.
const serveLog = "/run/onprem-lb-lab.log"

// Run runs one command: up, down, or serve (the background process that up starts).
func Run(ctx context.Context, command string, o Options) error {
	switch command {
	case "up":
		return up(ctx, o)
	case "down":
		return down(ctx, o)
	case "serve":
		return serve(o)
	default:
		return fmt.Errorf("unknown command %q: want up or down", command)
	}
}

func up(ctx context.Context, o Options) error {
	if pid, held := lab.LockHolder(); held {
		return fmt.Errorf("a lab is already running (pid %d, kubeconfig %s); `make lab-down` stops it",
			pid, filepath.Join(o.Lab.Dir, "pki", "admin.kubeconfig"))
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logFile, err := os.Create(serveLog)
	if err != nil {
		return err
	}
	defer logFile.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(exe, append([]string{"serve"}, o.Args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = []*os.File{w} // fd 3: progress, until the lab is ready
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	w.Close()
	began := time.Now()
	var kubeconfig string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if k, ok := strings.CutPrefix(line, "READY "); ok {
			kubeconfig = k
			break
		}
		fmt.Println(line)
	}
	if kubeconfig == "" {
		cmd.Wait()
		return fmt.Errorf("the lab did not start (log: %s)", serveLog)
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	kubectl := filepath.Join(o.Lab.BinDir, "kubectl")
	fmt.Printf("\nlab ready in %v (pid %d, log %s)\n\n", time.Since(began).Round(100*time.Millisecond), pid, serveLog)
	out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "wide").CombinedOutput()
	fmt.Printf("%s\n", out)
	if err != nil {
		return fmt.Errorf("kubectl get nodes: %w", err)
	}
	fmt.Printf(`Use it:
  export KUBECONFIG=%s
  %s get nodes,svc -A
  ip netns exec olb-client <command>      # a host on the LAN, e.g. arping -c1 198.18.0.11
  ip netns exec olb-node-1 <command>      # a node, e.g. iptables-save -t nat
Stop it:
  make lab-down
`, kubeconfig, kubectl)
	return nil
}

func down(ctx context.Context, o Options) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := lab.Cleanup(ctx, o.Lab.Dir); err != nil {
		return err
	}
	fmt.Println("lab removed: no olb-* namespace, process, link or file is left")
	return nil
}

// serve starts the lab, reports progress on fd 3 until it is ready, then keeps it running
// until SIGTERM or SIGINT and stops it.
func serve(o Options) error {
	progress := os.NewFile(3, "progress")
	var ready atomic.Bool
	report := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		fmt.Println(time.Now().Format(time.TimeOnly), line)
		if !ready.Load() {
			io.WriteString(progress, line+"\n")
		}
	}
	o.Lab.Logf = report
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	l, err := lab.Start(ctx, o.Lab)
	if err != nil {
		report("%v", err)
		return err
	}
	defer l.Stop()
	fmt.Fprintf(progress, "READY %s\n", l.Kubeconfig)
	ready.Store(true)
	progress.Close()
	<-ctx.Done()
	report("stopping the lab")
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}
