package dataplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Cleanup removes everything this package ever made in the network namespace
// of r, both families: every rule in another chain that jumps to a chain
// named ONPREM-LB-*, then every ONPREM-LB-* chain (nat and filter). Other
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
	for _, table := range []string{tableNAT, tableFilter} {
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
