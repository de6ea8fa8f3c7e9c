package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is a program the lab runs inside one of its network namespaces.
type Process struct {
	Name string // e.g. "kube-proxy-node-1"
	NS   string
	Log  string // standard output and error
	// Started is when the lab started it.
	Started time.Time

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error // how it exited, once done is closed
}

// startProcess runs bin in ns with its output in <logDir>/<name>.log (see startCommand).
func startProcess(logDir, ns, name string, env []string, bin string, args ...string) (*Process, error) {
	return startCommand(logDir, ns, name, env, append([]string{"ip", "netns", "exec", ns, bin}, args...))
}

// startCommand runs argv, which must enter ns and then exec the program so that the PID is
// the program's, with its output in <logDir>/<name>.log. The process dies with the thread
// that started it if the lab process dies first (Pdeathsig), and it gets its own process
// group so that signals to the lab do not reach it.
func startCommand(logDir, ns, name string, env, argv []string) (*Process, error) {
	inheritNothing.Do(closeInheritedOnExec)
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, NS: ns, Log: logPath, Started: time.Now(), cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// inheritNothing makes sure closeInheritedOnExec runs once, before the first lab process starts.
var inheritNothing sync.Once

// closeInheritedOnExec marks every descriptor of this process above standard error
// close-on-exec, so that lab processes inherit none of those this process inherited itself:
// FRR's daemons, which drop privileges and so lose their parent-death signal, outlive a lab
// process that crashes, and must not keep holding what its parent gave it, such as the
// machine's lab lock of `flock /tmp/onprem-lab.lock go test ...`.
func closeInheritedOnExec() {
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}

// PID returns the program's process ID (whatever enters its namespaces execs it).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM, waits up to grace for the process to end, then kills it.
func (p *Process) Stop(grace time.Duration) {
	if ended, _ := p.Exited(); ended {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Process) Kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	data, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(bytes.ToValidUTF8(data, nil)), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// failure describes why a process did not become ready: how it exited, if it did, and the
// end of its log.
func (p *Process) failure(err error) error {
	if ended, exitErr := p.Exited(); ended {
		err = errors.Join(err, fmt.Errorf("%s exited: %v", p.Name, exitErr))
	}
	return fmt.Errorf("%w\n%s log ends with:\n%s", err, p.Name, p.Tail(15))
}
