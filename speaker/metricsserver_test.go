package speaker

import (
	"net"
	"net/http"
	"net/netip"
	"testing"

	"k8s.io/component-base/metrics"

	"github.com/onprem-lb/onprem-lb/speaker/l2"
)

// TestMetricsServerDefaultIsLoopbackOnly checks that, unless told otherwise, the speaker's
// unauthenticated /metrics and /announcements answer on the node itself and nowhere else:
// on this machine's other addresses the port is closed.
func TestMetricsServerDefaultIsLoopbackOnly(t *testing.T) {
	host, _, err := net.SplitHostPort(DefaultMetricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	// The default's host with any free port: the real port may be taken on a test machine.
	srv, err := metricsServer(Config{MetricsAddr: net.JoinHostPort(host, "0")}, metrics.NewKubeRegistry(), func() map[netip.Addr]l2.Status { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.serve()
	t.Cleanup(func() { srv.Close() })
	port := srv.ln.Addr().(*net.TCPAddr).Port

	for _, path := range []string{"/healthz", "/metrics", "/announcements", "/announcements/bgp"} {
		resp, err := http.Get("http://" + netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String() + path)
		if err != nil {
			t.Fatalf("GET %s on loopback: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s on loopback: %s, want 200", path, resp.Status)
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	others := 0
	for _, a := range addrs {
		prefix, err := netip.ParsePrefix(a.String())
		if err != nil || prefix.Addr().IsLoopback() || prefix.Addr().IsLinkLocalUnicast() {
			continue
		}
		others++
		if conn, err := net.Dial("tcp", netip.AddrPortFrom(prefix.Addr(), uint16(port)).String()); err == nil {
			conn.Close()
			t.Errorf("the default metrics address answers on %s, want loopback only", prefix.Addr())
		}
	}
	t.Logf("port %d closed on the %d other addresses of this machine", port, others)
}

// TestMetricsServerProfiling checks that /debug/pprof/ is served only when asked for.
func TestMetricsServerProfiling(t *testing.T) {
	for _, profiling := range []bool{false, true} {
		srv, err := metricsServer(Config{MetricsAddr: "127.0.0.1:0", Profiling: profiling}, metrics.NewKubeRegistry(), func() map[netip.Addr]l2.Status { return nil }, nil)
		if err != nil {
			t.Fatal(err)
		}
		go srv.serve()
		resp, err := http.Get("http://" + srv.ln.Addr().String() + "/debug/pprof/heap")
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusNotFound
		if profiling {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("profiling %v: GET /debug/pprof/heap: %s, want %d", profiling, resp.Status, want)
		}
	}
}
