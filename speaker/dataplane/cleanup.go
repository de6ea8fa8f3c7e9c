package dataplane

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
)

// Cleanup removes everything this package ever made in the network namespace
// of r, both families: every rule in another chain that jumps to a chain
// named ONPREM-LB-*, then every ONPREM-LB-* chain (nat, filter and mangle). Other
// rules and chains are not touched. It finds what to remove with
// iptables-save, so it also removes what an older version or another process
// left; with nothing to remove it changes nothing. A family whose tools do
// not work (no IPv6) is an error only if it holds something of ours.
//
// Cleanup must not run concurrently with a Dataplane using the same
// namespace.
func Cleanup(ctx context.Context, r Runner) error {
	var errs []error
	for _, f := range families {
		if err := cleanupFamily(ctx, r, f); err != nil {
			errs = append(errs, fmt.Errorf("dataplane: cleanup %s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

func cleanupFamily(ctx context.Context, r Runner, f Family) error {
	var all []byte
	for _, table := range ourTables {
		out, err := r.Run(ctx, f, Save, nil, "-t", table)
		if err != nil {
			if f == IPv6 {
				// Most likely no IPv6 here: then nothing of ours either.
				return nil
			}
			return fmt.Errorf("iptables-save -t %s: %w", table, err)
		}
		all = append(all, out...)
	}
	s, err := parseSave(all)
	if err != nil {
		return err
	}
	if len(s.jumps) == 0 && len(s.chains) == 0 {
		return nil
	}
	if len(s.jumps) > 0 {
		t, err := r.Tables(f)
		if err != nil {
			return err
		}
		for _, j := range s.jumps {
			if err := t.DeleteIfExists(j.table, j.chain, j.spec...); err != nil {
				return fmt.Errorf("deleting jump %v from %s/%s: %w", j.spec, j.table, j.chain, err)
			}
		}
	}
	var d delta
	for k := range s.chains {
		d.delete = append(d.delete, k)
	}
	slices.SortFunc(d.delete, compareKeys)
	if d.empty() {
		return nil
	}
	if _, err := r.Run(ctx, f, Restore, restoreInput(d, nil), "--noflush"); err != nil {
		return fmt.Errorf("deleting %d chains: %w", len(d.delete), err)
	}
	return nil
}

// CleanupNode is Cleanup once per iptables backend installed (nf_tables and legacy, each
// with IPv4 and IPv6), in the network namespace opts.NetnsPath; opts.Backend is ignored.
// It is what uninstalling runs: the backend a speaker detects can differ from the one an
// earlier run used (kubelet or kube-proxy switched, another version), and what that run
// made would otherwise stay. Without either variant installed it cleans with the plain
// iptables binaries.
func CleanupNode(ctx context.Context, opts RunnerOptions) error {
	var errs []error
	cleaned := false
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		if _, err := exec.LookPath("iptables-" + string(b) + "-restore"); err != nil {
			continue
		}
		opts.Backend, cleaned = b, true
		if err := Cleanup(ctx, NewRunner(opts)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b, err))
		}
	}
	if !cleaned {
		opts.Backend = BackendAuto
		return Cleanup(ctx, NewRunner(opts))
	}
	return errors.Join(errs...)
}
