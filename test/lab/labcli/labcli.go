// Package labcli is the lab command line: `up` starts a lab in a background process that
// keeps it running (and its nodes heartbeating) and returns once it is ready; `demo` does the
// same and deploys onprem-lb into it (package demo); `down` stops that process and removes
// everything the lab made.
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

	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
)

// Options are the lab's options plus the arguments to pass on to the background process.
type Options struct {
	Lab  lab.Options
	Args []string
	// Demo deploys onprem-lb into the lab before it is reported ready.
	Demo bool
}

// serveLog is where the background process writes its log; it outlives the lab directory.
const serveLog = "/run/onprem-lb-lab.log"

// Run runs one command: up, down, or serve (the background process that up starts).
func Run(ctx context.Context, command string, o Options) error {
	switch command {
	case "up":
		return up(ctx, o)
	case "demo":
		o.Demo = true
		return up(ctx, o)
	case "down":
		return down(ctx, o)
	case "serve":
		return serve(o)
	default:
		return fmt.Errorf("unknown command %q: want up, demo or down", command)
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
	serveArgs := []string{"serve"}
	if o.Demo {
		serveArgs = append(serveArgs, "--demo")
	}
	cmd := exec.Command(exe, append(serveArgs, o.Args...)...)
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
`, kubeconfig, kubectl)
	if o.Lab.Router != nil {
		fmt.Printf(`  vtysh --vty_socket %s -c 'show bgp summary'   # the router (olb-router): BGP, BFD, routes
  ip netns exec olb-wan-client <command>  # a host behind the router, e.g. ip route
`, filepath.Join(o.Lab.Dir, "frr", "router"))
	}
	if o.Demo {
		fmt.Printf(`onprem-lb runs in it (logs in %s):
  %s get svc -o wide                          # the EXTERNAL-IPs
  %s describe svc web                         # events: IPAllocated, Announcing
  %s get svc web -o jsonpath='{.status.conditions}'   # who announces it
  ip netns exec olb-client arping -c1 -i eth0 <EXTERNAL-IP>
  ip netns exec olb-client curl http://<EXTERNAL-IP>/   # a pod answers with its name and your address
`, filepath.Join(o.Lab.Dir, "logs"), kubectl, kubectl, kubectl)
	}
	fmt.Println("Stop it:\n  make lab-down")
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
	ctx, stop := signalContext(context.Background())
	defer stop()
	l, err := lab.Start(ctx, o.Lab)
	if err != nil {
		report("%v", err)
		return err
	}
	defer l.Stop()
	if o.Demo {
		if err := runDemo(ctx, l, o.Lab.Images, report); err != nil {
			report("%v", err)
			return err
		}
	}
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

// runDemo installs onprem-lb into l from the images the lab imported, with manifests/ and
// examples/ from the working directory (the repository root, as make runs it).
func runDemo(ctx context.Context, l *lab.Lab, images []string, report func(string, ...any)) error {
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	return demo.Run(ctx, l, demo.Options{Repo: repo, Images: images, Report: report})
}

// signalContext is cancelled by SIGTERM or SIGINT, with the signal as its cause
// (context.Cause), so that what stops the lab or the demo says why; stop releases the
// signals.
func signalContext(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case sig := <-signals:
			cancel(fmt.Errorf("lab process %d received %v", os.Getpid(), sig))
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(signals)
		cancel(nil)
	}
}
