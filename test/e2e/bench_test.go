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

// BenchmarkCCM measures, in the lab, through the real API server (run with -benchtime 1x;
// each run reports its own figures):
//   - ip-latency-ms: Service created → IP in its status, median of 30 Services created one by one
//   - assign-10k-s: 10,000 Services created at once → all have an IP (create-10k-s: the
//     creates alone, 50 at a time)
//   - rebuild-s: CCM restarted (scaled to 0 and back) with 10,000 Services → allocations
//     rebuilt (from its log), counted from its container's start (a whole second);
//     rebuild-after-lead-s counts from the moment it leads
//   - ip-changes: Services whose IPs differ after that restart (target 0)
func BenchmarkCCM(b *testing.B) {
	ctx, l, c := startCCM(b, testPools)
	createNamespace(ctx, b, l, "latency")
	createNamespace(ctx, b, l, "bulk")

	for b.Loop() {
		b.ReportMetric(ipLatency(ctx, b, l, 30), "ip-latency-ms")

		const n = 10000
		began := time.Now()
		createMany(ctx, b, l, "bulk", n)
		b.ReportMetric(time.Since(began).Seconds(), "create-10k-s")
		waitAllAssigned(ctx, b, l, "bulk", n)
		b.ReportMetric(time.Since(began).Seconds(), "assign-10k-s")

		before := allIngress(ctx, b, l)
		c.restartCCM(ctx)
		sinceStart, sinceLead := c.rebuildSeconds(ctx)
		b.ReportMetric(sinceStart, "rebuild-s")
		b.ReportMetric(sinceLead, "rebuild-after-lead-s")
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

// waitAllAssigned waits until n Services of ns have distinct IPs, following a watch so that
// the measurement does not load the API server with lists of 10,000 Services.
func waitAllAssigned(ctx context.Context, b testing.TB, l *lab.Lab, ns string, n int) {
	list, err := l.Client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	holder := map[string]string{} // IP -> Service
	assigned := map[string][]string{}
	note := func(svc *corev1.Service) {
		got := ips(svc.Status.LoadBalancer.Ingress)
		for _, ip := range got {
			if other, dup := holder[ip]; dup && other != svc.Name {
				b.Fatalf("IP %s given to both %s and %s", ip, other, svc.Name)
			}
			holder[ip] = svc.Name
		}
		if len(got) > 0 {
			assigned[svc.Name] = got
		}
	}
	for i := range list.Items {
		note(&list.Items[i])
	}
	w, err := l.Client.CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	for len(assigned) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("watch ended with %d of %d Services assigned", len(assigned), n)
			}
			if svc, isSvc := ev.Object.(*corev1.Service); isSvc {
				note(svc)
			}
		case <-ctx.Done():
			b.Fatalf("%d of %d Services assigned: %v", len(assigned), n, ctx.Err())
		}
	}
}

// rebuildSeconds reads, from the leading CCM pod's log, how long after its container started,
// and after it became the leader, the allocations were rebuilt from Service status.
func (o *onprem) rebuildSeconds(ctx context.Context) (sinceStart, sinceLead float64) {
	o.t.Helper()
	leader := o.waitLeader(ctx, "")
	if len(leader.Status.ContainerStatuses) != 1 || leader.Status.ContainerStatuses[0].State.Running == nil {
		o.t.Fatalf("CCM pod %s: no running container: %+v", leader.Name, leader.Status.ContainerStatuses)
	}
	started := leader.Status.ContainerStatuses[0].State.Running.StartedAt.Time
	var led, rebuilt time.Time
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		log, err := o.l.Kubectl(ctx, "-n", system, "logs", leader.Name)
		if err != nil {
			return false, nil
		}
		for _, line := range strings.Split(log, "\n") {
			switch {
			case strings.Contains(line, "Successfully acquired lease"):
				led = klogTime(started, line)
			case strings.Contains(line, "Rebuilt allocations from Service status"):
				rebuilt = klogTime(started, line)
				return !led.IsZero() && !rebuilt.IsZero(), nil
			}
		}
		return false, nil
	})
	if err != nil {
		o.t.Fatalf("no rebuild in the log of CCM pod %s: %v", leader.Name, err)
	}
	return rebuilt.Sub(started).Seconds(), rebuilt.Sub(led).Seconds()
}

// klogTime returns the time of a klog line ("I1122 03:05:38.896271 ..."; UTC, as a
// container without zone information logs, no year: the year is ref's), or the zero time.
func klogTime(ref time.Time, line string) time.Time {
	f := strings.Fields(line)
	if len(f) < 2 || len(f[0]) != 5 {
		return time.Time{}
	}
	ts, err := time.ParseInLocation("2006 0102 15:04:05.000000", fmt.Sprintf("%d %s %s", ref.Year(), f[0][1:], f[1]), time.UTC)
	if err != nil {
		return time.Time{}
	}
	return ts
}

// BenchmarkLab measures the lab itself (run with -benchtime 1x): lab-ready-s, Start of a lab
// of three real nodes with warm binaries, the four images imported, until every node is
// Ready; node-mib, the resident memory of a node's own processes (containerd, kubelet, shims;
// the median of the nodes) once onprem-lb runs on every node.
func BenchmarkLab(b *testing.B) {
	for b.Loop() {
		opts, archives := labOptions(b, lab.Options{})
		began := time.Now()
		l := labtest.Start(b, opts)
		b.ReportMetric(time.Since(began).Seconds(), "lab-ready-s")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		o := install(ctx, b, l, archives, speakerPools)
		o.waitLeader(ctx, "")
		o.startSpeakers(ctx)
		var mib []float64
		for _, n := range l.Nodes {
			rss, err := l.NodeMemory(n)
			if err != nil {
				b.Fatal(err)
			}
			mib = append(mib, float64(rss)/(1<<20))
		}
		slices.Sort(mib)
		b.ReportMetric(mib[len(mib)/2], "node-mib")
		cancel()
	}
}
