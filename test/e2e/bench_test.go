package e2e

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

const benchPools = `
pools:
  - name: lan
    addresses: [198.18.0.200-198.18.0.239, "2001:db8:18::200/122"]
  - name: bulk
    autoAssign: false
    addresses: [198.18.64.0/18]
`

// BenchmarkCCM measures, in the lab, through the real API server (run with -benchtime 1x;
// each run reports its own figures):
//   - ip-latency-ms: Service created → IP in its status, median of 30 Services created one by one
//   - assign-10k-s: 10,000 Services created at once → all have an IP
//   - rebuild-s: CCM restarted with 10,000 Services → allocations rebuilt (from its log)
//   - ip-changes: Services whose IPs differ after that restart (target 0)
func BenchmarkCCM(b *testing.B) {
	l := labtest.Start(b, lab.Options{NoKubeProxy: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c := newCCM(ctx, b, l, benchPools)
	c.start(ctx)
	createNamespace(ctx, b, l, "latency")
	createNamespace(ctx, b, l, "bulk")

	for b.Loop() {
		b.ReportMetric(ipLatency(ctx, b, l, 30), "ip-latency-ms")

		const n = 10000
		began := time.Now()
		createMany(ctx, b, l, "bulk", n)
		waitAllAssigned(ctx, b, l, "bulk", n)
		b.ReportMetric(time.Since(began).Seconds(), "assign-10k-s")

		before := allIngress(ctx, b, l)
		c.stop()
		c.start(ctx)
		b.ReportMetric(c.rebuildSeconds(b), "rebuild-s")
		changes := 0
		after := allIngress(ctx, b, l)
		for svc, want := range before {
			if !slices.Equal(after[svc], want) {
				changes++
			}
		}
		b.ReportMetric(float64(changes), "ip-changes")
	}
}

// ipLatency creates n Services one after the other and returns the median time, in ms, from
// the create call to the status carrying an IP, as seen through a watch.
func ipLatency(ctx context.Context, b testing.TB, l *lab.Lab, n int) float64 {
	w, err := l.Client.CoreV1().Services("latency").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	var samples []time.Duration
	for i := range n {
		name := fmt.Sprintf("lat-%d-%d", time.Now().UnixNano(), i)
		began := time.Now()
		create(ctx, b, l, lbService("latency", name))
		for done := false; !done; {
			select {
			case ev := <-w.ResultChan():
				svc, ok := ev.Object.(*corev1.Service)
				done = ok && ev.Type == watch.Modified && svc.Name == name && len(svc.Status.LoadBalancer.Ingress) > 0
			case <-time.After(10 * time.Second):
				b.Fatalf("Service %s got no IP within 10s", name)
			}
		}
		samples = append(samples, time.Since(began))
	}
	slices.Sort(samples)
	return float64(samples[len(samples)/2].Microseconds()) / 1000
}

// createMany creates n LoadBalancer Services in ns from the bulk pool, 50 at a time.
func createMany(ctx context.Context, b testing.TB, l *lab.Lab, ns string, n int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			svc := lbService(ns, fmt.Sprintf("s%05d", i), inPool("bulk"), noNodePorts)
			if _, err := l.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}

// waitAllAssigned waits until n Services of ns have distinct IPs.
func waitAllAssigned(ctx context.Context, b testing.TB, l *lab.Lab, ns string, n int) {
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := l.Client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return false, nil
		}
		seen := map[string]bool{}
		for _, s := range list.Items {
			for _, ip := range ips(s.Status.LoadBalancer.Ingress) {
				if seen[ip] {
					return false, fmt.Errorf("IP %s given twice", ip)
				}
				seen[ip] = true
			}
		}
		return len(seen) == n, nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// rebuildSeconds reads, from the running CCM's log, how long after the process started the
// allocations were rebuilt from Service status (leader election and informer sync included).
func (c *ccm) rebuildSeconds(b testing.TB) float64 {
	var rebuilt time.Time
	started := c.proc.Started
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		for _, line := range strings.Split(c.proc.Tail(1000), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || len(f[0]) != 5 || !strings.Contains(line, "Rebuilt allocations from Service status") {
				continue
			}
			// klog: "I1122 03:05:38.896271 ...", local time, no year.
			ts, err := time.ParseInLocation("2006 0102 15:04:05.000000", fmt.Sprintf("%d %s %s", started.Year(), f[0][1:], f[1]), time.Local)
			if err != nil {
				return false, err
			}
			rebuilt = ts
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		b.Fatalf("no rebuild in the CCM log: %v", err)
	}
	return rebuilt.Sub(started).Seconds()
}
