package dataplane

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Options configure New.
type Options struct {
	Logger  klog.Logger
	Metrics *Metrics // nil: no metrics
	// Resync is how often Run checks the kernel against the last desired
	// state and repairs what drifted. Default 30s.
	Resync time.Duration
	// Runner runs iptables; nil: NewRunner for this network namespace with
	// the detected backend.
	Runner Runner
	// MasqueradeMark is the packet mark bit (one bit) that asks for
	// masquerade; 0: DefaultMasqueradeMark.
	MasqueradeMark uint32
	// Timeout bounds each iptables command a sync runs. Default 1m.
	Timeout time.Duration
	// Conntrack clears the UDP entries of removed endpoints; nil: the conntrack tool in
	// this network namespace.
	Conntrack Conntrack
}

// Dataplane programs the iptables forwarding of the VIPs. It is safe for
// concurrent use: Sync and the resync in Run take turns.
type Dataplane struct {
	log     klog.Logger
	metrics *Metrics
	resync  time.Duration
	timeout time.Duration
	runner  Runner
	ct      Conntrack
	mark    uint32

	mu          sync.Mutex
	desired     []Service
	handovers   Handovers
	haveDesired bool
	// forwarded is what the last successful Sync programmed: the UDP flows to clear
	// are those it forwarded and the next successful Sync no longer does.
	forwarded []Service
	fams      [2]familyState
}

// familyState is what the Dataplane knows of one family's kernel state.
type familyState struct {
	// active: the family is in use (it has or had VIPs, or chains of ours
	// were found): its base chains and jumps are kept until Cleanup.
	active bool
	// verify: read the kernel (iptables-save) before the next diff. Set on
	// the first sync, on each resync and after a failure.
	verify bool
	// based: base chains and jump rules ensured since the last verify.
	based bool
	// applied is every chain of ours believed to be in the kernel, with
	// the content last written (unknownContent: found, not written by us).
	applied ruleset
	// seen is the hash of the kernel's rendering (iptables-save) of an
	// applied chain, recorded at the first resync after it was written; a
	// different rendering later is drift.
	seen  map[chainKey]uint64
	rules int // rules in applied
	cache *ruleCache
}

// New returns a Dataplane that has done nothing yet. It starts no
// goroutines and runs no command.
func New(opts Options) *Dataplane {
	d := &Dataplane{
		log:     opts.Logger,
		metrics: opts.Metrics,
		resync:  opts.Resync,
		timeout: opts.Timeout,
		runner:  opts.Runner,
		ct:      opts.Conntrack,
		mark:    opts.MasqueradeMark,
	}
	if d.ct == nil {
		d.ct = NewConntrack("")
	}
	if d.resync <= 0 {
		d.resync = 30 * time.Second
	}
	if d.timeout <= 0 {
		d.timeout = time.Minute
	}
	if d.mark == 0 {
		d.mark = DefaultMasqueradeMark
	}
	if d.runner == nil {
		d.runner = NewRunner(RunnerOptions{Logger: opts.Logger})
	}
	for i := range d.fams {
		d.fams[i] = familyState{verify: true, applied: ruleset{}, seen: map[chainKey]uint64{}, cache: newRuleCache()}
	}
	return d
}

// Sync programs exactly services: per family (IPv4 with iptables, IPv6 with
// ip6tables) it computes every chain, then writes only the chains that
// changed and deletes those no longer wanted, in one iptables-restore
// --noflush per family. The first Sync also reads the kernel and deletes
// chains of ours left from before (another process, an older version).
//
// Once the rules are written, it deletes the conntrack entries of the UDP flows
// to endpoints no longer forwarded to (see Flow), as kube-proxy does; a failure
// to delete them is logged.
//
// On error nothing is assumed applied: the next Sync or resync reads the
// kernel again and sends whatever differs. The error says which family and
// what failed; the other family is synced regardless.
func (d *Dataplane) Sync(services []Service) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.desired = slices.Clone(services)
	d.haveDesired = true
	if err := d.syncLocked(false); err != nil {
		return err
	}
	if flows := staleUDP(d.forwarded, d.desired); len(flows) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
		defer cancel()
		if err := clearFlows(ctx, d.ct, flows); err != nil {
			d.log.Error(err, "Clearing the conntrack entries of removed UDP endpoints")
		} else {
			d.log.V(2).Info("Cleared the conntrack entries of removed UDP endpoints", "flows", len(flows))
		}
	}
	d.forwarded = d.desired
	return nil
}

// SetHandovers sets the VIPs whose connections are forwarded to their previous owner (see
// Handover); the next Sync programs them, replacing the last set.
func (d *Dataplane) SetHandovers(h Handovers) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handovers = Handovers{VIPs: slices.Clone(h.VIPs), Peers: slices.Clone(h.Peers)}
}

// Run resyncs every Options.Resync until ctx is done: it checks the kernel
// against the last state given to Sync and repairs what drifted (chains
// flushed, changed or deleted by hand, jump rules removed). It does nothing
// before the first Sync, logs resync errors rather than returning them, and
// returns nil when ctx is done, leaving the rules in place.
func (d *Dataplane) Run(ctx context.Context) error {
	t := time.NewTicker(d.resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		d.repairDrift()
	}
}

// repairDrift is one iteration of Run: if Sync was called, it reads the kernel
// and repairs drift.
func (d *Dataplane) repairDrift() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.haveDesired {
		return
	}
	if err := d.syncLocked(true); err != nil {
		d.log.Error(err, "iptables resync failed; retrying at the next sync")
	}
}

func (d *Dataplane) syncLocked(resync bool) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	var errs []error
	for _, f := range families {
		if err := d.syncFamily(ctx, f, resync); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	elapsed := time.Since(start)
	d.metrics.observeSync(elapsed.Seconds(), err)
	d.log.V(4).Info("iptables sync done", "resync", resync, "duration", elapsed, "services", len(d.desired), "err", err)
	return err
}

func (d *Dataplane) syncFamily(ctx context.Context, f Family, resync bool) error {
	st := &d.fams[f]
	hasVIPs := anyVIP(d.desired, f)
	if resync {
		st.verify = true
	}
	if st.verify {
		st.based = false
	}
	if !st.active && !hasVIPs && !st.verify {
		return nil
	}
	// A family that was never used may not work here at all (no IPv6):
	// only report its errors once it has VIPs.
	quiet := !st.active && !hasVIPs
	fail := func(err error) error {
		if quiet {
			d.log.V(2).Info("family without VIPs not checked", "family", f, "err", err)
			st.verify = false
			return nil
		}
		return err
	}
	tables, err := d.runner.Tables(f)
	if err != nil {
		return fail(fmt.Errorf("dataplane: %s: %w", f, err))
	}
	if st.verify {
		if err := d.observe(ctx, f, st); err != nil {
			return fail(err)
		}
	}
	if !st.active && !hasVIPs && len(st.applied) == 0 {
		st.verify = false
		return nil
	}
	if !st.based {
		if err := ensureBase(tables); err != nil {
			st.verify = true
			return fmt.Errorf("dataplane: %s: base chains and jumps: %w", f, err)
		}
		st.based = true
	}
	want := buildRulesCached(d.desired, f, genConfig{mark: d.mark, randomFully: tables.HasRandomFully(), handovers: d.handovers}, st.cache)
	dl := diffRules(st.applied, want, false)
	if !dl.empty() {
		input := restoreInput(dl, want)
		if _, err := d.runner.Run(ctx, f, Restore, input, "--noflush"); err != nil {
			st.verify = true
			return fmt.Errorf("dataplane: %s: iptables-restore writing %d chains and deleting %d: %w", f, len(dl.write), len(dl.delete), err)
		}
		for _, k := range dl.write {
			st.rules += countRules(want[k]) - countRules(st.applied[k])
			st.applied[k] = want[k]
			delete(st.seen, k)
		}
		for _, k := range dl.delete {
			st.rules -= countRules(st.applied[k])
			delete(st.applied, k)
			delete(st.seen, k)
		}
		d.log.V(2).Info("iptables chains synced", "family", f, "written", len(dl.write), "deleted", len(dl.delete), "bytes", len(input))
	}
	st.active = true
	st.verify = false
	d.metrics.setRules(f, st.rules)
	return nil
}

// observe reads our chains from the kernel and corrects st.applied: a chain
// missing is forgotten, a chain whose rule count or rendering changed since
// it was last seen is marked unknown (so rewritten or deleted), a chain of
// ours we did not know is marked unknown.
func (d *Dataplane) observe(ctx context.Context, f Family, st *familyState) error {
	var all []byte
	for _, table := range ourTables {
		out, err := d.runner.Run(ctx, f, Save, nil, "-t", table)
		if err != nil {
			return fmt.Errorf("dataplane: %s: iptables-save: %w", f, err)
		}
		all = append(all, out...)
	}
	s, err := parseSave(all)
	if err != nil {
		return fmt.Errorf("dataplane: %s: iptables-save: %w", f, err)
	}
	drifted := 0
	for k, content := range st.applied {
		rules, ok := s.chains[k]
		if !ok {
			if content != unknownContent {
				drifted++
			}
			st.rules -= countRules(content)
			delete(st.applied, k)
			delete(st.seen, k)
			continue
		}
		if content == unknownContent {
			continue
		}
		h := hashRules(rules)
		if old, ok := st.seen[k]; len(rules) != countRules(content) || (ok && old != h) {
			drifted++
			st.rules -= countRules(content)
			st.applied[k] = unknownContent
			delete(st.seen, k)
			continue
		}
		st.seen[k] = h
	}
	found := 0
	for k := range s.chains {
		if _, ok := st.applied[k]; !ok {
			st.applied[k] = unknownContent
			found++
		}
	}
	if drifted > 0 || found > 0 {
		d.log.Info("iptables chains differ from what was applied; rewriting them", "family", f, "changed", drifted, "unknown", found)
	}
	return nil
}

func hashRules(rules []string) uint64 {
	h := fnv.New64a()
	for _, r := range rules {
		h.Write([]byte(r))
		h.Write([]byte{'\n'})
	}
	return h.Sum64()
}

// Jump rules from the built-in chains to ours, each inserted first in its
// chain unless already there.
var jumps = []struct {
	table, chain string
	spec         []string
}{
	{tableNAT, "PREROUTING", []string{"-m", "comment", "--comment", "onprem-lb VIPs", "-j", servicesChain}},
	{tableNAT, "OUTPUT", []string{"-m", "comment", "--comment", "onprem-lb VIPs", "-j", servicesChain}},
	{tableNAT, "POSTROUTING", []string{"-m", "comment", "--comment", "onprem-lb masquerade", "-j", postroutingChain}},
	{tableFilter, "INPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "onprem-lb VIP firewall", "-j", firewallChain}},
	{tableFilter, "FORWARD", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "onprem-lb VIP firewall", "-j", firewallChain}},
	{tableFilter, "OUTPUT", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "onprem-lb VIP firewall", "-j", firewallChain}},
	{tableMangle, "POSTROUTING", []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "onprem-lb VIP guard", "-j", guardChain}},
	{tableMangle, "PREROUTING", []string{"-p", "tcp", "!", "--syn", "-m", "conntrack", "--ctstate", "NEW,INVALID", "-m", "comment", "--comment", "onprem-lb handover", "-j", handoverChain}},
}

// ensureBase creates the base chains (if missing) and the jump rules to
// them (if missing), with go-iptables.
func ensureBase(t Tables) error {
	for _, k := range baseChains {
		ok, err := t.ChainExists(k.table, k.name)
		if err != nil {
			return fmt.Errorf("chain %s/%s: %w", k.table, k.name, err)
		}
		if ok {
			continue
		}
		if err := t.NewChain(k.table, k.name); err != nil {
			// Someone else may have made it meanwhile.
			if ok, err2 := t.ChainExists(k.table, k.name); err2 != nil || !ok {
				return fmt.Errorf("creating chain %s/%s: %w", k.table, k.name, err)
			}
		}
	}
	for _, j := range jumps {
		if err := t.InsertUnique(j.table, j.chain, 1, j.spec...); err != nil {
			return fmt.Errorf("jump from %s/%s: %w", j.table, j.chain, err)
		}
	}
	return nil
}

func anyVIP(services []Service, f Family) bool {
	for _, s := range services {
		for _, v := range s.VIPs {
			if f.has(v) {
				return true
			}
		}
	}
	return false
}
