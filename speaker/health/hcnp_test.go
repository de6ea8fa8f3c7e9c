package health

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/klog/v2/ktesting"
)

// ports is the Listen of an HCNPServer under test: a port listed in real is
// bound on 127.0.0.1 as is; any other port is mapped to an ephemeral port
// of 127.0.0.1, recorded in addrs.
type ports struct {
	mu    sync.Mutex
	real  map[uint16]bool
	addrs map[uint16]string
	calls map[uint16]int
	fail  map[uint16]error
}

func newPorts() *ports {
	return &ports{real: map[uint16]bool{}, addrs: map[uint16]string{}, calls: map[uint16]int{}, fail: map[uint16]error{}}
}

func (p *ports) listen(network, addr string) (net.Listener, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil || host != "" || network != "tcp" {
		return nil, errors.New("want tcp on every address, got " + network + " " + addr)
	}
	n, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return nil, err
	}
	port := uint16(n)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[port]++
	if err := p.fail[port]; err != nil {
		return nil, err
	}
	to := "127.0.0.1:0"
	if p.real[port] {
		to = net.JoinHostPort("127.0.0.1", ps)
	}
	ln, err := net.Listen(network, to)
	if err != nil {
		return nil, err
	}
	p.addrs[port] = ln.Addr().String()
	return ln, nil
}

func (p *ports) addr(port uint16) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[port]
}

func (p *ports) callsTo(port uint16) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[port]
}

// answer is what an HTTP client saw.
type answer struct {
	Status int
	Header http.Header
	Body   string
}

var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}, Timeout: 5 * time.Second}

func get(t *testing.T, method, url string) (answer, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	h := resp.Header.Clone()
	h.Del("Date")
	return answer{Status: resp.StatusCode, Header: h, Body: string(body)}, nil
}

// kubeProxyAnswer is kube-proxy's answer (pkg/proxy/healthcheck,
// service_health.go, v1.36.3), written out.
func kubeProxyAnswer(namespace, name string, endpoints int, proxyHealthy bool) answer {
	body := `{
	"service": {
		"namespace": "` + namespace + `",
		"name": "` + name + `"
	},
	"localEndpoints": ` + strconv.Itoa(endpoints) + `,
	"serviceProxyHealthy": ` + strconv.FormatBool(proxyHealthy) + `
}`
	status := http.StatusServiceUnavailable
	if endpoints > 0 && proxyHealthy {
		status = http.StatusOK
	}
	return answer{
		Status: status,
		Header: http.Header{
			"Content-Type":                     {"application/json"},
			"X-Content-Type-Options":           {"nosniff"},
			"X-Load-Balancing-Endpoint-Weight": {strconv.Itoa(endpoints)},
			"Content-Length":                   {strconv.Itoa(len(body))},
		},
		Body: body,
	}
}

func newTestServer(t *testing.T, p *ports, proxyHealthy func() bool) *HCNPServer {
	t.Helper()
	s := NewHCNPServer(ServerOptions{Logger: bufferedLogger(t), Listen: p.listen, ProxyHealthy: proxyHealthy})
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestHCNPResponse(t *testing.T) {
	svc := ServiceKey{Namespace: "shop", Name: "web"}
	var proxyHealthy atomic.Bool
	p := newPorts()
	s := newTestServer(t, p, proxyHealthy.Load)

	tests := []struct {
		name         string
		endpoints    int
		proxyHealthy bool
		method, path string
		wantStatus   int
	}{
		{name: "local endpoints", endpoints: 3, proxyHealthy: true, method: http.MethodGet, path: "/", wantStatus: http.StatusOK},
		{name: "one local endpoint, any path", endpoints: 1, proxyHealthy: true, method: http.MethodGet, path: "/healthz", wantStatus: http.StatusOK},
		{name: "any method", endpoints: 1, proxyHealthy: true, method: http.MethodPost, path: "/x/y?z=1", wantStatus: http.StatusOK},
		{name: "no local endpoint", endpoints: 0, proxyHealthy: true, method: http.MethodGet, path: "/", wantStatus: http.StatusServiceUnavailable},
		{name: "proxy unhealthy", endpoints: 2, proxyHealthy: false, method: http.MethodGet, path: "/", wantStatus: http.StatusServiceUnavailable},
		{name: "neither", endpoints: 0, proxyHealthy: false, method: http.MethodGet, path: "/", wantStatus: http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxyHealthy.Store(tt.proxyHealthy)
			s.SyncServices(map[ServiceKey]ServiceHealth{svc: {Port: 30100, LocalEndpoints: tt.endpoints}})
			got, err := get(t, tt.method, "http://"+p.addr(30100)+tt.path)
			if err != nil {
				t.Fatal(err)
			}
			want := kubeProxyAnswer("shop", "web", tt.endpoints, tt.proxyHealthy)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if got.Status != tt.wantStatus {
				t.Errorf("status %d, want %d", got.Status, tt.wantStatus)
			}
			// And it is the JSON document kube-proxy documents.
			type doc struct {
				Service struct {
					Namespace string `json:"namespace"`
					Name      string `json:"name"`
				} `json:"service"`
				LocalEndpoints      int  `json:"localEndpoints"`
				ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
			}
			var d doc
			dec := json.NewDecoder(strings.NewReader(got.Body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&d); err != nil {
				t.Fatal(err)
			}
			var wantDoc doc
			wantDoc.Service.Namespace, wantDoc.Service.Name = "shop", "web"
			wantDoc.LocalEndpoints, wantDoc.ServiceProxyHealthy = tt.endpoints, tt.proxyHealthy
			if diff := cmp.Diff(wantDoc, d); diff != "" {
				t.Errorf("decoded body (-want +got):\n%s", diff)
			}
		})
	}
	if got := p.callsTo(30100); got != 1 {
		t.Errorf("port opened %d times, want once: counts are updated in place", got)
	}
}

func TestHCNPSyncServices(t *testing.T) {
	var (
		a = ServiceKey{Namespace: "ns", Name: "a"}
		b = ServiceKey{Namespace: "ns", Name: "b"}
		c = ServiceKey{Namespace: "other", Name: "c"}
	)
	p := newPorts()
	s := newTestServer(t, p, nil)

	type served map[uint16]int // port → status, 0: refused
	probe := func(ports ...uint16) served {
		got := served{}
		for _, port := range ports {
			a, err := get(t, http.MethodGet, "http://"+p.addr(port)+"/")
			switch {
			case errors.Is(err, syscall.ECONNREFUSED):
				got[port] = 0
			case err != nil:
				t.Fatalf("port %d: %v", port, err)
			default:
				got[port] = a.Status
			}
		}
		return got
	}

	steps := []struct {
		name      string
		want      map[ServiceKey]ServiceHealth
		wantOpens map[uint16]int // Listen calls so far per port
		wantServe served
	}{
		{
			name:      "open a and b",
			want:      map[ServiceKey]ServiceHealth{a: {Port: 30001, LocalEndpoints: 2}, b: {Port: 30002}},
			wantOpens: map[uint16]int{30001: 1, 30002: 1},
			wantServe: served{30001: 200, 30002: 503},
		},
		{
			name:      "a loses its endpoints in place, b dropped, c opened",
			want:      map[ServiceKey]ServiceHealth{a: {Port: 30001}, c: {Port: 30003, LocalEndpoints: 1}},
			wantOpens: map[uint16]int{30001: 1, 30002: 1, 30003: 1},
			wantServe: served{30001: 503, 30002: 0, 30003: 200},
		},
		{
			name:      "a moves to another port",
			want:      map[ServiceKey]ServiceHealth{a: {Port: 30004, LocalEndpoints: 1}, c: {Port: 30003, LocalEndpoints: 1}},
			wantOpens: map[uint16]int{30001: 1, 30002: 1, 30003: 1, 30004: 1},
			wantServe: served{30001: 0, 30003: 200, 30004: 200},
		},
		{
			name:      "b wants c's port: not opened",
			want:      map[ServiceKey]ServiceHealth{a: {Port: 30004, LocalEndpoints: 1}, b: {Port: 30003, LocalEndpoints: 5}, c: {Port: 30003, LocalEndpoints: 1}},
			wantOpens: map[uint16]int{30001: 1, 30002: 1, 30003: 1, 30004: 1},
			wantServe: served{30003: 200, 30004: 200},
		},
		{
			name:      "nothing wanted",
			want:      map[ServiceKey]ServiceHealth{},
			wantOpens: map[uint16]int{30001: 1, 30002: 1, 30003: 1, 30004: 1},
			wantServe: served{30001: 0, 30002: 0, 30003: 0, 30004: 0},
		},
	}
	for _, st := range steps {
		s.SyncServices(st.want)
		p.mu.Lock()
		opens := map[uint16]int{}
		for port, n := range p.calls {
			opens[port] = n
		}
		p.mu.Unlock()
		if diff := cmp.Diff(st.wantOpens, opens); diff != "" {
			t.Errorf("%s: Listen calls (-want +got):\n%s", st.name, diff)
		}
		var ports []uint16
		for port := range st.wantServe {
			ports = append(ports, port)
		}
		if diff := cmp.Diff(st.wantServe, probe(ports...)); diff != "" {
			t.Errorf("%s: status per port, 0 refused (-want +got):\n%s", st.name, diff)
		}
	}
	// The body of the one that kept its port after the conflict is c's.
	s.SyncServices(map[ServiceKey]ServiceHealth{c: {Port: 30003, LocalEndpoints: 1}})
	got, err := get(t, http.MethodGet, "http://"+p.addr(30003)+"/")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(kubeProxyAnswer("other", "c", 1, true), got); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, http.MethodGet, "http://"+p.addr(30003)+"/"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after Close: %v, want connection refused", err)
	}
	s.SyncServices(map[ServiceKey]ServiceHealth{a: {Port: 30005, LocalEndpoints: 1}})
	if n := p.callsTo(30005); n != 0 {
		t.Errorf("SyncServices after Close opened a port")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestHCNPPortHeld(t *testing.T) {
	// Another process (a kube-proxy) serves the port.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "kube-proxy")
	}))
	t.Cleanup(other.Close)
	port := uint16(other.Listener.Addr().(*net.TCPAddr).Port)
	url := "http://" + other.Listener.Addr().String() + "/"

	p := newPorts()
	p.real[port] = true
	s := NewHCNPServer(ServerOptions{Logger: bufferedLogger(t), Listen: p.listen})
	t.Cleanup(func() { _ = s.Close() })
	logger := s.log
	want := map[ServiceKey]ServiceHealth{{Namespace: "ns", Name: "svc"}: {Port: port, LocalEndpoints: 1}}

	for range 3 {
		s.SyncServices(want)
		got, err := get(t, http.MethodGet, url)
		if err != nil {
			t.Fatal(err)
		}
		if got.Body != "kube-proxy" {
			t.Fatalf("the port's holder lost it: answer %q", got.Body)
		}
	}
	if got := p.callsTo(port); got != 3 {
		t.Errorf("Listen called %d times for a held port, want 3 (retried at each sync)", got)
	}
	const msg = "Healthcheck port held by another process; skipping it until it is free"
	if got := countLogs(logger, msg); got != 1 {
		t.Errorf("%q logged %d times, want once", msg, got)
	}

	other.Close()
	s.SyncServices(want)
	got, err := get(t, http.MethodGet, url)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(kubeProxyAnswer("ns", "svc", 1, true), got); diff != "" {
		t.Errorf("freed port taken over: answer (-want +got):\n%s", diff)
	}
}

func TestHCNPListenError(t *testing.T) {
	p := newPorts()
	p.fail[30001] = &net.OpError{Op: "listen", Net: "tcp", Err: syscall.EACCES}
	s := newTestServer(t, p, nil)
	svc := ServiceKey{Namespace: "ns", Name: "svc"}
	for range 3 {
		s.SyncServices(map[ServiceKey]ServiceHealth{svc: {Port: 30001, LocalEndpoints: 1}})
	}
	if got := p.callsTo(30001); got != 3 {
		t.Errorf("Listen called %d times, want 3 (retried at each sync)", got)
	}
	var logged []error
	for _, e := range s.log.GetSink().(ktesting.Underlier).GetBuffer().Data() {
		if e.Type == ktesting.LogError {
			logged = append(logged, e.Err)
		}
	}
	if len(logged) != 1 {
		t.Fatalf("%d errors logged, want one: %v", len(logged), logged)
	}
	if err := logged[0]; !errors.Is(err, syscall.EACCES) || !strings.HasPrefix(err.Error(), "health: ") {
		t.Errorf("logged error %q: want a health: error wrapping EACCES", err)
	}
}
