package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FRR is one instance of FRR's zebra, bfdd and bgpd (Debian's frr package) in a lab
// namespace. Its configuration, sockets and pid files are in a directory of its own under the
// lab's, never in /etc/frr or /run/frr, so an frr.service of the machine neither helps nor
// disturbs it. The daemons run as the user frr, which the package makes (they refuse root,
// which is not in the group frrvty), and log to the lab's log directory as <name>-<daemon>.log.
type FRR struct {
	Name string // e.g. "router"
	NS   string
	// Dir holds <daemon>.conf, <daemon>.pid, <daemon>.vty, zserv.api and bfdd.sock.
	Dir               string
	Zebra, BFDd, BGPd *Process
}

// FRRConfig is the configuration of an FRR instance's daemons, in FRR's own syntax. zebra
// needs none.
type FRRConfig struct {
	BFDd, BGPd string
}

// frrBin holds the daemons of Debian's frr package.
const frrBin = "/usr/lib/frr"

// frrTmp is where FRR's daemons keep crash logs, in <daemon>.<pid>.
const frrTmp = "/var/tmp/frr"

// frrUser is the user FRR's daemons run as.
const frrUser = "frr"

// frrDaemons are the daemons of an FRR instance in start order: zebra first, which the others
// connect to.
var frrDaemons = []string{"zebra", "bfdd", "bgpd"}

// StartFRR runs zebra, bfdd and bgpd in the network namespace ns with the configuration conf
// for the life of the lab, and returns once each answers on its vty socket. name names the
// instance's directory and logs; it must be unique in the lab.
func (l *Lab) StartFRR(ctx context.Context, ns, name string, conf FRRConfig) (*FRR, error) {
	f, err := RunFRR(ctx, l.opts.Dir, l.logDir, ns, name, conf)
	if err != nil {
		return nil, err
	}
	for _, p := range f.processes() {
		l.track(p, nil)
	}
	return f, nil
}

// RunFRR runs zebra, bfdd and bgpd in the network namespace ns with the configuration conf,
// without a lab: their directory is <dir>/frr/<name> and their logs <logDir>/<name>-<daemon>.log.
// It returns once each daemon answers on its vty socket. The caller ends them with Stop and
// then calls RemoveFRRLeftovers(dir). dir must be traversable by the user frr.
func RunFRR(ctx context.Context, dir, logDir, ns, name string, conf FRRConfig) (_ *FRR, err error) {
	f := &FRR{Name: name, NS: ns, Dir: filepath.Join(dir, "frr", name)}
	defer func() {
		if err != nil {
			f.Stop(0)
			err = fmt.Errorf("lab: start FRR %s: %w", name, err)
		}
	}()
	if err := f.writeConfig(conf); err != nil {
		return nil, err
	}
	for _, d := range frrDaemons {
		p, err := startProcess(logDir, ns, name+"-"+d, nil, filepath.Join(frrBin, d), f.args(d)...)
		if err != nil {
			return nil, err
		}
		*f.process(d) = p
		// zebra first: the others give up on a zserv socket that is not there yet.
		err = waitFor(ctx, p, 10*time.Second, d+"'s vty socket", func(context.Context) (bool, error) {
			_, err := os.Stat(filepath.Join(f.Dir, d+".vty"))
			return err == nil, err
		})
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

// writeConfig makes f's directory, owned by the daemons' user, with their configuration.
func (f *FRR) writeConfig(conf FRRConfig) error {
	u, err := user.Lookup(frrUser)
	if err != nil {
		return fmt.Errorf("%w (is Debian's frr installed? test/deps.sh installs it)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// The daemons, running as frr, must reach their directory: the lab's is traversable.
	if err := os.MkdirAll(filepath.Dir(f.Dir), 0o711); err != nil {
		return err
	}
	if err := os.Mkdir(f.Dir, 0o755); err != nil {
		return err
	}
	if err := os.Chown(f.Dir, uid, gid); err != nil {
		return err
	}
	files := map[string]string{"zebra": "", "bfdd": conf.BFDd, "bgpd": conf.BGPd}
	for d, text := range files {
		text = "hostname " + f.Name + "\n" + text
		if err := os.WriteFile(filepath.Join(f.Dir, d+".conf"), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// args returns the command line of daemon d: in the foreground, every path in f.Dir, no vty
// TCP port, logging to standard output.
func (f *FRR) args(d string) []string {
	path := func(name string) string { return filepath.Join(f.Dir, name) }
	args := []string{
		"-u", frrUser, "-g", frrUser,
		"-f", path(d + ".conf"), "-i", path(d + ".pid"),
		"--vty_socket", f.Dir, "-P", "0",
		"-z", path("zserv.api"),
		"--log", "stdout", "--log-level", "info",
	}
	if d == "bfdd" {
		args = append(args, "--bfdctl", path("bfdd.sock"))
	}
	return args
}

// process returns the field that holds daemon d's process.
func (f *FRR) process(d string) **Process {
	switch d {
	case "zebra":
		return &f.Zebra
	case "bfdd":
		return &f.BFDd
	default:
		return &f.BGPd
	}
}

// processes returns the daemons that run, bgpd first.
func (f *FRR) processes() []*Process {
	var ps []*Process
	for i := len(frrDaemons) - 1; i >= 0; i-- {
		if p := *f.process(frrDaemons[i]); p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// Signal sends sig to every daemon: SIGSTOP and SIGCONT freeze and thaw the instance.
func (f *FRR) Signal(sig syscall.Signal) error {
	var errs []error
	for _, p := range f.processes() {
		errs = append(errs, p.Signal(sig))
	}
	return errors.Join(errs...)
}

// Stop ends the daemons as a clean shutdown does, bgpd first, so that its peers are told
// (a BGP NOTIFICATION) rather than left to notice; a daemon still running after grace is
// killed.
func (f *FRR) Stop(grace time.Duration) {
	for _, p := range f.processes() {
		p.Signal(syscall.SIGCONT) // a frozen daemon cannot shut down
		p.Stop(grace)
	}
}

// Vtysh runs FRR commands (e.g. "show bgp summary") on the instance and returns their output.
func (f *FRR) Vtysh(ctx context.Context, commands ...string) (string, error) {
	args := []string{"--vty_socket", f.Dir, "--config_dir", f.Dir}
	for _, c := range commands {
		args = append(args, "-c", c)
	}
	return run(ctx, "vtysh", args...)
}

// BFDPeer is one BFD session of an FRR instance, as `show bfd peers json` has it.
type BFDPeer struct {
	Peer      netip.Addr `json:"peer"`
	Local     netip.Addr `json:"local"`
	Interface string     `json:"interface"`
	// Status is "up", "down", "init" or "shutdown".
	Status string `json:"status"`
	// ReceiveInterval and TransmitInterval are in milliseconds, the local ones.
	ReceiveInterval  int `json:"receive-interval"`
	TransmitInterval int `json:"transmit-interval"`
	DetectMultiplier int `json:"detect-multiplier"`
}

// BFDPeers returns the instance's BFD sessions.
func (f *FRR) BFDPeers(ctx context.Context) ([]BFDPeer, error) {
	out, err := f.Vtysh(ctx, "show bfd peers json")
	if err != nil {
		return nil, err
	}
	return parseBFDPeers([]byte(out))
}

// parseBFDPeers parses the output of `show bfd peers json`.
func parseBFDPeers(data []byte) ([]BFDPeer, error) {
	var peers []BFDPeer
	if err := json.Unmarshal(data, &peers); err != nil {
		return nil, fmt.Errorf("lab: parse BFD peers: %w", err)
	}
	return peers, nil
}

// RemoveFRRLeftovers removes the directories /var/tmp/frr/<daemon>.<pid> that FRR's daemons
// make and remove only when they exit cleanly, for every daemon whose pid file is still in
// the lab directory dir: those were killed (by Stop, or by the cleanup after a lab that
// crashed: a daemon that drops privileges loses its parent-death signal, so it outlives the
// lab process until then). cleanup has ended them all, though some may still be exiting.
func RemoveFRRLeftovers(dir string) error {
	pidFiles, err := filepath.Glob(filepath.Join(dir, "frr", "*", "*.pid"))
	if err != nil {
		return err
	}
	var errs []error
	for _, file := range pidFiles {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			continue
		}
		daemon := strings.TrimSuffix(filepath.Base(file), ".pid")
		if err := os.RemoveAll(fmt.Sprintf("%s/%s.%d", frrTmp, daemon, pid)); err != nil {
			errs = append(errs, err)
		}
	}
	os.Remove(frrTmp) // if empty: FRR makes it again
	return errors.Join(errs...)
}
