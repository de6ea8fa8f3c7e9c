// Package config reads the IP-pool file of onprem-lb: the YAML document,
// mounted from one ConfigMap, that both the cloud-controller-manager and the
// speaker read (see "IP-pool YAML" in docs/DESIGN.md for the field names, which are
// part of the contract).
//
// What it promises:
//
//   - Parse and Load return either a valid *Config or an *Error naming the
//     file, the field path (pools[1].addresses[0], dataplane, ...) and the
//     reason; never both, and they never panic on any input. A valid Config's
//     pools are accepted by ipam.New, because Parse validates them with it.
//   - Field names are matched exactly, case included, and label keys keep
//     their dots and case (app.kubernetes.io/name). A field the package does
//     not know is not an error: it becomes a warning in Config.Warnings,
//     naming its path, so that a newer file still loads in an older binary.
//   - Absent fields take the documented defaults, stored resolved: autoAssign
//     true, dataplane kube-proxy, announce l2, selectors that match
//     everything; for BGP, port 179, holdTime 90s, keepaliveTime a third of
//     holdTime, BFD (when given) 300ms × 3, aggregation lengths 32 and 128.
//   - A pool announced over BGP needs the bgp: section, and the peers it
//     names must be there; a bgpAdvertisement of a pool announced only by
//     L2 is checked, then ignored with a warning.
//   - A Watcher follows the file however it changes: written in place,
//     replaced by rename, or through the ..data symlink swap with which the
//     kubelet updates a mounted ConfigMap. It hands over only valid configs
//     that differ from the last one; a bad file keeps the last good config,
//     and is reported and counted. Without inotify (unavailable, out of
//     instances or watches) it polls the file, logs that once and counts it.
//     It stops when its context is done.
//   - The loadBalancerClass is fixed at start: a Watcher hands over configs
//     with the class it started with, and a warning while the file names
//     another (onprem_lb_config_restart_pending is 1 meanwhile), so that the
//     CCM and every speaker keep serving the same Services until restarted.
//
// A Config is never modified after Parse returns it; it may be shared by
// goroutines.
package config
