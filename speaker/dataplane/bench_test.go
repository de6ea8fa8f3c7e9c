package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// manyServices is n Cluster Services, each with one IPv4 VIP in 10.96.0.0/16
// ... (not routed anywhere: the benchmarks only program rules), one TCP port
// and two endpoints.
func manyServices(n int) []Service {
	svcs := make([]Service, n)
	for i := range svcs {
		svcs[i] = Service{
			Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("svc%d", i),
			VIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})},
			Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: []Endpoint{
				{IP: netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}), Port: 8080, Local: true},
				{IP: netip.AddrFrom4([4]byte{10, 245, byte(i >> 8), byte(i)}), Port: 8080},
			}}},
		}
	}
	return svcs
}

func benchNode(b *testing.B) Runner {
	labtest.NeedRoot(b, "ip", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "iptables-save")
	ns := newNamespaces(b, "bench", "node")[0]
	return NewRunner(RunnerOptions{NetnsPath: "/run/netns/" + ns, Logger: klog.Background().V(1)})
}

// BenchmarkSyncFull10k: the first Sync of 10,000 Services into an empty
// namespace (after a Cleanup), real iptables-restore.
func BenchmarkSyncFull10k(b *testing.B) {
	r := benchNode(b)
	svcs := manyServices(10000)
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		if err := Cleanup(context.Background(), r); err != nil {
			b.Fatal(err)
		}
		d := New(Options{Runner: r, Logger: klog.Background().V(1)})
		b.StartTimer()
		start := time.Now()
		if err := d.Sync(svcs); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/sync")
}

// BenchmarkSyncOneChanged: with 10,000 Services programmed, one Service's
// endpoints change (alternately one is added, one taken away) and one
// Service appears or goes (which rewrites a dispatch shard).
func BenchmarkSyncOneChanged(b *testing.B) {
	r := benchNode(b)
	svcs := manyServices(10000)
	d := New(Options{Runner: r, Logger: klog.Background().V(1)})
	if err := d.Sync(svcs); err != nil {
		b.Fatal(err)
	}
	b.Run("endpoints", func(b *testing.B) {
		var total time.Duration
		i := 0
		for b.Loop() {
			i++
			p := &svcs[i%len(svcs)].Ports[0]
			if len(p.Endpoints) == 2 {
				p.Endpoints = append(p.Endpoints, Endpoint{IP: netip.MustParseAddr("10.250.0.1"), Port: 8080})
			} else {
				p.Endpoints = p.Endpoints[:2]
			}
			start := time.Now()
			if err := d.Sync(svcs); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/sync")
	})
	b.Run("service added or removed", func(b *testing.B) {
		var total time.Duration
		extra := manyServices(10001)[10000]
		extra.VIPs = []netip.Addr{netip.MustParseAddr("10.97.0.1")}
		for b.Loop() {
			if len(svcs) == 10000 {
				svcs = append(svcs, extra)
			} else {
				svcs = svcs[:10000]
			}
			start := time.Now()
			if err := d.Sync(svcs); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/sync")
	})
}
