// Command onprem-speaker runs on every node (hostNetwork): it answers ARP and NDP for the
// LoadBalancer IPs its node owns and hands them over when it stops. Flags may also be given
// as environment variables: ONPREM_SPEAKER_ and the flag name in upper case with '_' for
// '-', e.g. ONPREM_SPEAKER_NODE_NAME.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"k8s.io/klog/v2"

	"github.com/onprem-lb/onprem-lb/speaker"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		klog.ErrorS(err, "onprem-speaker failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(args []string) error {
	fs := pflag.NewFlagSet("onprem-speaker", pflag.ContinueOnError)
	fs.String("config", "/etc/onprem-lb/pools.yaml", "the IP-pool YAML (the same file as the cloud-controller-manager's --cloud-config)")
	fs.String("node-name", "", "this node's name (required; in a DaemonSet, from spec.nodeName)")
	fs.String("kubeconfig", "", "kubeconfig path; empty: in-cluster")
	fs.String("bind-address", "", "address for membership gossip; empty: the node's InternalIP")
	fs.Int("memberlist-port", 7946, "membership gossip port, TCP and UDP, the same on every node")
	fs.String("memberlist-key-file", "", "file holding the gossip keys, one a line, each the base64 of 16, 24 or 32 bytes; the first encrypts, all decrypt (rotation: add the new key second, then make it first, then remove the old one); empty: unencrypted")
	fs.String("metrics-bind-address", speaker.DefaultMetricsAddr, "address for /metrics, /healthz and /announcements, served without authentication: keep it on loopback unless every host that can reach it may read them (e.g. :7472 for all addresses); empty: none")
	fs.Bool("profiling", false, "also serve Go's /debug/pprof/ on --metrics-bind-address (as unauthenticated as the rest)")
	fs.Duration("handover-delay", speaker.DefaultHandoverDelay, "how long a stopping speaker keeps answering after it left, while the new owners announce")
	fs.Duration("bgp-drain-delay", speaker.DefaultBGPDrainDelay, "with BGP: how long a stopping speaker advertises its routes with GRACEFUL_SHUTDOWN (65535:0) before it withdraws them, while the routers move the traffic to the other nodes")
	fs.Bool("cleanup", false, "remove every iptables chain and rule the speaker made (the forwarding of dataplane: iptables, the guard of dataplane: kube-proxy; IPv4 and IPv6, nf_tables and legacy), then exit; run it on a node whose speaker is stopped")
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	if err := fs.Parse(args); err != nil {
		return err
	}

	v := viper.New()
	v.SetEnvPrefix("ONPREM_SPEAKER")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(fs); err != nil {
		return err
	}
	cfg := speaker.Config{
		NodeName:       v.GetString("node-name"),
		PoolFile:       v.GetString("config"),
		Kubeconfig:     v.GetString("kubeconfig"),
		MemberlistPort: v.GetInt("memberlist-port"),
		SecretKeyFile:  v.GetString("memberlist-key-file"),
		MetricsAddr:    v.GetString("metrics-bind-address"),
		Profiling:      v.GetBool("profiling"),
		HandoverDelay:  v.GetDuration("handover-delay"),
		BGPDrainDelay:  v.GetDuration("bgp-drain-delay"),
	}
	if s := v.GetString("bind-address"); s != "" {
		addr, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("--bind-address %q: %w", s, err)
		}
		cfg.BindAddr = addr
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if v.GetBool("cleanup") {
		return speaker.Cleanup(ctx)
	}
	return speaker.Run(ctx, cfg)
}
