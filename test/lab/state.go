package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultDir holds a running lab's files: certificates, kubeconfigs, etcd data and logs.
const DefaultDir = "/run/onprem-lb-lab"

// lockPath is the machine-wide lock that a running lab holds for its whole life.
const lockPath = "/run/onprem-lb-lab.lock"

// ErrRunning is returned when another lab holds the machine's lab lock.
var ErrRunning = errors.New("lab: another lab is running on this machine")

// lock holds the machine's lab lock. The file records the holder's PID for `lab down`.
type lock struct{ f *os.File }

func acquireLock() (*lock, error) {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: open lock %s: %w", lockPath, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if pid, ok := LockHolder(); ok {
				return nil, fmt.Errorf("%w (pid %d); stop it first with `make lab-down`", ErrRunning, pid)
			}
			return nil, fmt.Errorf("%w; stop it first with `make lab-down`", ErrRunning)
		}
		return nil, fmt.Errorf("lab: lock %s: %w", lockPath, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &lock{f: f}, nil
}

func (l *lock) release() {
	l.f.Truncate(0)
	l.f.Close() // closing the last descriptor drops the flock
}

// LockHolder returns the PID of the process that holds the lab lock, if one does.
func LockHolder() (int, bool) {
	f, err := os.Open(lockPath)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0, false // nobody holds it
	}
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	return pid, err == nil && pid > 0
}

// labNamespaces lists the network namespaces a lab made (named olb-...).
func labNamespaces(ctx context.Context) ([]string, error) {
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// cleanup removes everything a lab makes: the processes in its cgroups (real nodes: their
// containerd, kubelet, shims and containers; the nodes' mount namespaces and the pods' network
// namespaces end with them) and in its network namespaces (only the lab starts processes
// there), the cgroups, the namespaces with their links, the machine's veth and the lab's
// files. It is safe to call when nothing is left, and it is what repairs a lab that crashed.
func cleanup(ctx context.Context, dir string) error {
	var errs []error
	if err := removeLabCgroups(ctx); err != nil {
		errs = append(errs, err)
	}
	names, err := labNamespaces(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, ns := range names {
		if out, err := run(ctx, "ip", "netns", "pids", ns); err == nil {
			for _, field := range strings.Fields(out) {
				// Never this process: a goroutine of ours may be inside ns (InNetns) on the
				// main thread, which is what `ip netns pids` looks at.
				if pid, err := strconv.Atoi(field); err == nil && pid != os.Getpid() {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := ip(ctx, "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := ip(ctx, "link", "show", hostLink); err == nil {
		if err := ip(ctx, "link", "del", hostLink); err != nil {
			errs = append(errs, err)
		}
	}
	if err := RemoveFRRLeftovers(dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Cleanup removes whatever a lab left behind, after stopping the lab process that holds the
// lab lock (as `make lab-down` does). It returns once the machine holds no lab.
func Cleanup(ctx context.Context, dir string) error {
	if pid, ok := LockHolder(); ok {
		if err := syscall.Kill(pid, syscall.SIGTERM); err == nil {
			waitUnlocked(ctx)
		}
	}
	l, err := acquireLock()
	if err != nil {
		return err
	}
	defer l.release()
	return cleanup(ctx, dir)
}

// waitUnlocked waits, at most 30 s, until no process holds the lab lock.
func waitUnlocked(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if _, held := LockHolder(); !held {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}
