package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The lab's cgroups: a real node (Options.Kubelets) runs in /olb-node-N of every cgroup
// hierarchy. Its containerd, kubelet and shims are in that cgroup itself; the kubelet puts the
// containers below it (it is the kubelet's cgroupRoot). Everything a node runs is therefore in
// one subtree, which is how teardown finds it, also after a crash. A hybrid machine's cgroup2
// hierarchy (/sys/fs/cgroup/unified), which runc also fills, is treated like the others.

// parseCgroupMounts returns the mount points of the cgroup hierarchies listed in a
// /proc/<pid>/mountinfo text, and whether any is cgroup v1.
func parseCgroupMounts(mountinfo string) (mounts []string, v1 bool) {
	for _, line := range strings.Split(mountinfo, "\n") {
		before, after, ok := strings.Cut(line, " - ")
		fields, fsType := strings.Fields(before), strings.Fields(after)
		if ok && len(fields) >= 5 && len(fsType) > 0 && (fsType[0] == "cgroup" || fsType[0] == "cgroup2") {
			mounts = append(mounts, fields[4])
			v1 = v1 || fsType[0] == "cgroup"
		}
	}
	return mounts, v1
}

// cgroupMounts returns the mount points of this machine's cgroup hierarchies, and whether
// any is cgroup v1.
func cgroupMounts() ([]string, bool, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, false, err
	}
	mounts, v1 := parseCgroupMounts(string(data))
	return mounts, v1, nil
}

// createCgroup makes the cgroup rel (e.g. "/olb-node-1") in every hierarchy. A cpuset
// cgroup gets its parent's CPUs and memory nodes, without which no process may join it.
func createCgroup(mounts []string, rel string) error {
	for _, m := range mounts {
		dir := filepath.Join(m, rel)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create cgroup: %w", err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
			if errors.Is(err, fs.ErrNotExist) {
				break // not a cpuset hierarchy
			}
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, f), v, 0o644)
			}
			if err != nil {
				return fmt.Errorf("cgroup %s: copy %s: %w", dir, f, err)
			}
		}
	}
	return nil
}

// joinCgroups returns a command line that moves itself into the cgroup rel of every
// hierarchy and then execs argv, so that argv and all it starts are in the cgroup from
// their first instruction.
func joinCgroups(mounts []string, rel string, argv ...string) []string {
	cmd := []string{"sh", "-c", `for d; do shift; [ "$d" = -- ] && break; echo $$ > "$d/cgroup.procs"; done; exec "$@"`, "sh"}
	for _, m := range mounts {
		cmd = append(cmd, filepath.Join(m, rel))
	}
	return append(append(cmd, "--"), argv...)
}

// labCgroups returns every cgroup the lab made (top level olb-*) in every hierarchy, each
// followed by the cgroups below it.
func labCgroups(mounts []string) ([]string, error) {
	var dirs []string
	for _, m := range mounts {
		entries, err := os.ReadDir(m)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), nsPrefix) {
				continue
			}
			err := filepath.WalkDir(filepath.Join(m, e.Name()), func(path string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, path)
				}
				return err
			})
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
	}
	return dirs, nil
}

// cgroupProcs returns the processes in the given cgroups (not below them).
func cgroupProcs(dirs []string) []int {
	var pids []int
	for _, dir := range dirs {
		data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs")) // a cgroup gone is empty
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// removeLabCgroups kills every process in the lab's cgroups (containers, shims, containerd,
// kubelets), waits until they are gone, and removes the cgroups, deepest first.
func removeLabCgroups(ctx context.Context) error {
	dirs, err := thawLabCgroups()
	if err != nil || len(dirs) == 0 {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Kill until none is left: a process may fork while its siblings die.
	for pids := cgroupProcs(dirs); len(pids) > 0; pids = cgroupProcs(dirs) {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes %v of the lab's cgroups do not end: %w", pids, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	var errs []error
	for _, dir := range slices.Backward(dirs) {
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// thawLabCgroups thaws every cgroup the lab made (a frozen one, FreezeNode, holds even the
// SIGKILLs of its processes until it thaws) and returns them, as labCgroups does.
func thawLabCgroups() ([]string, error) {
	mounts, _, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	dirs, err := labCgroups(mounts)
	for _, dir := range dirs {
		setFreezerState(dir, thawed) // a cgroup of another hierarchy has no freezer.state
	}
	return dirs, err
}

// States of a cgroup v1 freezer.
const (
	frozen = "FROZEN"
	thawed = "THAWED"
)

// setFreezerState sets the freezer state of cgroup dir (in the freezer hierarchy) and waits
// until the kernel reports it: freezing takes until every task has stopped.
func setFreezerState(dir, state string) error {
	file := filepath.Join(dir, "freezer.state")
	if err := os.WriteFile(file, []byte(state), 0o644); err != nil {
		return err
	}
	for range 500 {
		got, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(got)) == state {
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("%s: still not %s after 1 s", file, state)
}
