package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Tool is a bulk tool of a family: iptables-restore or iptables-save (and
// their ip6tables twins).
type Tool int

// The bulk tools.
const (
	Restore Tool = iota // <family>-restore
	Save                // <family>-save
)

func (t Tool) String() string {
	if t == Save {
		return "save"
	}
	return "restore"
}

// Runner runs the iptables tools of one network namespace, with the backend
// (nft or legacy) the node uses. Dataplane and Cleanup use it for all they
// do to the kernel; tests hand in a fake.
type Runner interface {
	// Tables returns the handle for chain and jump rule edits of family f:
	// a go-iptables *iptables.IPTables for the real runner.
	Tables(f Family) (Tables, error)
	// Run runs the family's restore or save tool with args, stdin on its
	// standard input, and returns its standard output.
	Run(ctx context.Context, f Family, tool Tool, stdin []byte, args ...string) ([]byte, error)
}

// Tables is the part of go-iptables' *iptables.IPTables this package uses.
type Tables interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	InsertUnique(table, chain string, pos int, rulespec ...string) error
	DeleteIfExists(table, chain string, rulespec ...string) error
	HasRandomFully() bool
}

var _ Tables = (*iptables.IPTables)(nil)

// Backend is the iptables flavour: nf_tables or legacy x_tables.
type Backend string

// The backends. BackendAuto detects the one the node uses.
const (
	BackendAuto   Backend = ""
	BackendNFT    Backend = "nft"
	BackendLegacy Backend = "legacy"
)

// RunnerOptions configure NewRunner.
type RunnerOptions struct {
	// NetnsPath is the network namespace to work in, as a file
	// ("/run/netns/NAME", "/proc/PID/ns/net"); empty: the process's own.
	NetnsPath string
	// Backend forces a backend; BackendAuto (the default) detects it the
	// way kube-proxy's iptables wrapper does.
	Backend Backend
	Logger  klog.Logger
}

// NewRunner returns the Runner of the real iptables binaries. It runs
// nothing until used; the backend is detected on first use and logged once.
//
// With NetnsPath set, every command runs on a short-lived goroutine locked to
// an OS thread that joined the namespace (the thread is discarded after);
// the call waits for it.
func NewRunner(opts RunnerOptions) Runner {
	return &execRunner{opts: opts}
}

type execRunner struct {
	opts RunnerOptions

	mu      sync.Mutex
	done    bool
	err     error
	backend Backend
	bins    [2]binaries
	tables  [2]Tables
}

// binaries are the paths of one family's tools.
type binaries struct {
	iptables, restore, save string
}

func (r *execRunner) Tables(f Family) (Tables, error) {
	if err := r.init(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tables[f] == nil {
		proto := iptables.ProtocolIPv4
		if f == IPv6 {
			proto = iptables.ProtocolIPv6
		}
		ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(r.bins[f].iptables), iptables.Timeout(5))
		if err != nil {
			return nil, fmt.Errorf("dataplane: %s: %w", r.bins[f].iptables, err)
		}
		r.tables[f] = &netnsTables{ipt: ipt, netns: r.opts.NetnsPath}
	}
	return r.tables[f], nil
}

func (r *execRunner) Run(ctx context.Context, f Family, tool Tool, stdin []byte, args ...string) ([]byte, error) {
	if err := r.init(); err != nil {
		return nil, err
	}
	bin := r.bins[f].restore
	if tool == Save {
		bin = r.bins[f].save
	} else {
		args = append([]string{"-w", "5"}, args...)
	}
	return runIn(ctx, r.opts.NetnsPath, stdin, bin, args...)
}

// init detects the backend, once.
func (r *execRunner) init() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return r.err
	}
	r.done = true
	log := r.opts.Logger
	backend := r.opts.Backend
	reason := "configured"
	var legacyRules, nftRules int
	if backend == BackendAuto {
		backend, reason, legacyRules, nftRules = detectBackend(r.opts.NetnsPath)
	}
	r.backend = backend
	for _, f := range families {
		ipt := "iptables"
		if f == IPv6 {
			ipt = "ip6tables"
		}
		b := binaries{ipt, ipt + "-restore", ipt + "-save"}
		if backend != BackendAuto {
			// iptables-nft, iptables-nft-restore, ...; the plain names if the
			// distribution only has those.
			v := binaries{ipt + "-" + string(backend), ipt + "-" + string(backend) + "-restore", ipt + "-" + string(backend) + "-save"}
			if _, err := exec.LookPath(v.restore); err == nil {
				b = v
			}
		}
		r.bins[f] = b
	}
	if _, err := exec.LookPath(r.bins[IPv4].restore); err != nil {
		r.err = fmt.Errorf("dataplane: %w", err)
		return r.err
	}
	log.Info("iptables backend chosen", "backend", backendName(backend), "reason", reason,
		"legacyRules", legacyRules, "nftRules", nftRules, "restore", r.bins[IPv4].restore, "netns", r.opts.NetnsPath)
	return nil
}

func backendName(b Backend) string {
	if b == BackendAuto {
		return "default iptables"
	}
	return string(b)
}

// detectBackend is kube-proxy's iptables-wrapper logic: the backend that has
// kubelet's hint chains (KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY) wins;
// without them, legacy if it holds more rules than nft, else nft. Without
// both flavours installed it stays with the plain binaries (BackendAuto).
func detectBackend(netns string) (b Backend, reason string, legacyRules, nftRules int) {
	for _, bin := range []string{"iptables-legacy-save", "iptables-nft-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			return BackendAuto, bin + " not installed", 0, 0
		}
	}
	dump := func(flavour string) []byte {
		var all []byte
		for _, ipt := range []string{"iptables", "ip6tables"} {
			ctx, cancel := context.WithTimeout(context.Background(), detectTimeout)
			out, _ := runIn(ctx, netns, nil, ipt+"-"+flavour+"-save")
			cancel()
			all = append(all, out...)
		}
		return all
	}
	legacy, nft := dump("legacy"), dump("nft")
	hint := func(out []byte) bool {
		return bytes.Contains(out, []byte(":KUBE-IPTABLES-HINT ")) || bytes.Contains(out, []byte(":KUBE-KUBELET-CANARY "))
	}
	legacyRules, nftRules = bytes.Count(legacy, []byte("\n-A ")), bytes.Count(nft, []byte("\n-A "))
	switch {
	case hint(nft):
		return BackendNFT, "kubelet's chains are in nf_tables", legacyRules, nftRules
	case hint(legacy):
		return BackendLegacy, "kubelet's chains are in legacy iptables", legacyRules, nftRules
	case legacyRules > nftRules:
		return BackendLegacy, "more rules in legacy iptables", legacyRules, nftRules
	}
	return BackendNFT, "no more rules in legacy iptables than in nf_tables", legacyRules, nftRules
}

const detectTimeout = 5 * time.Second

// runIn runs bin in the network namespace netns ("": ours).
func runIn(ctx context.Context, netns string, stdin []byte, bin string, args ...string) ([]byte, error) {
	var out []byte
	err := inNetns(netns, func() error {
		cmd := exec.CommandContext(ctx, bin, args...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(stderr.String())
			if len(msg) > 2000 {
				msg = msg[:2000] + "..."
			}
			return fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, msg)
		}
		out = stdout.Bytes()
		return nil
	})
	return out, err
}

// inNetns runs fn with the calling OS thread in the network namespace
// netns: on a new goroutine locked to its thread, which is never unlocked
// and so discarded when fn returns. With netns empty it just calls fn.
func inNetns(netns string, fn func() error) error {
	if netns == "" {
		return fn()
	}
	ns, err := os.Open(netns)
	if err != nil {
		return fmt.Errorf("dataplane: network namespace: %w", err)
	}
	defer ns.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread leaves with the goroutine.
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("dataplane: setns %s: %w", netns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// netnsTables runs go-iptables calls in a network namespace.
type netnsTables struct {
	ipt   *iptables.IPTables
	netns string
}

func (t *netnsTables) ChainExists(table, chain string) (bool, error) {
	var ok bool
	err := inNetns(t.netns, func() (err error) {
		ok, err = t.ipt.ChainExists(table, chain)
		return err
	})
	return ok, err
}

func (t *netnsTables) NewChain(table, chain string) error {
	return inNetns(t.netns, func() error { return t.ipt.NewChain(table, chain) })
}

func (t *netnsTables) InsertUnique(table, chain string, pos int, rulespec ...string) error {
	return inNetns(t.netns, func() error { return t.ipt.InsertUnique(table, chain, pos, rulespec...) })
}

func (t *netnsTables) DeleteIfExists(table, chain string, rulespec ...string) error {
	return inNetns(t.netns, func() error { return t.ipt.DeleteIfExists(table, chain, rulespec...) })
}

func (t *netnsTables) HasRandomFully() bool { return t.ipt.HasRandomFully() }
