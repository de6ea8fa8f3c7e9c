package health

import (
	"context"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestStep(t *testing.T) {
	const (
		ok      = outcomeOK
		bad     = outcomeStatus
		refused = outcomeRefused
		timeout = outcomeUnreachable
		reset   = outcomeError
	)
	tests := []struct {
		name           string
		kind           kind
		history        []outcome
		wantHealthy    bool
		wantNoEndpoint bool
	}{
		{name: "proxy not probed yet is healthy", kind: kindProxy, wantHealthy: true},
		{name: "local not probed yet is healthy", kind: kindLocal, wantHealthy: true},
		{name: "proxy ok", kind: kindProxy, history: []outcome{ok}, wantHealthy: true},
		{name: "one 503 is not enough", kind: kindProxy, history: []outcome{ok, bad}, wantHealthy: true},
		{name: "two 503 in a row", kind: kindProxy, history: []outcome{ok, bad, bad}, wantHealthy: false},
		{name: "two 503 from the first probe", kind: kindProxy, history: []outcome{bad, bad}, wantHealthy: false},
		{name: "many failures", kind: kindProxy, history: []outcome{bad, bad, bad, bad, bad}, wantHealthy: false},
		{name: "one success heals", kind: kindProxy, history: []outcome{bad, bad, bad, ok}, wantHealthy: true},
		{name: "failures not consecutive", kind: kindProxy, history: []outcome{bad, ok, bad, ok, bad}, wantHealthy: true},
		{name: "one failure after healing", kind: kindProxy, history: []outcome{bad, bad, bad, ok, bad}, wantHealthy: true},
		{name: "two timeouts", kind: kindProxy, history: []outcome{ok, timeout, timeout}, wantHealthy: false},
		{name: "timeout then 503", kind: kindProxy, history: []outcome{ok, timeout, bad}, wantHealthy: false},
		{name: "two transport errors", kind: kindProxy, history: []outcome{ok, reset, reset}, wantHealthy: false},

		{name: "proxy refused from the start: no health endpoint", kind: kindProxy, history: []outcome{refused}, wantHealthy: true, wantNoEndpoint: true},
		{name: "proxy refused ever since: still no health endpoint", kind: kindProxy, history: []outcome{refused, refused, refused, refused}, wantHealthy: true, wantNoEndpoint: true},
		{name: "proxy refused after timeouts, never answered: no health endpoint", kind: kindProxy, history: []outcome{timeout, timeout, refused}, wantHealthy: true, wantNoEndpoint: true},
		{name: "proxy without endpoint that times out once", kind: kindProxy, history: []outcome{refused, refused, timeout}, wantHealthy: true},
		{name: "proxy without endpoint that times out twice", kind: kindProxy, history: []outcome{refused, timeout, timeout}, wantHealthy: false},
		{name: "health endpoint appears", kind: kindProxy, history: []outcome{refused, refused, ok}, wantHealthy: true},
		{name: "appeared endpoint answers 503 twice", kind: kindProxy, history: []outcome{refused, ok, bad, bad}, wantHealthy: false},
		{name: "refused once after it answered", kind: kindProxy, history: []outcome{refused, ok, refused}, wantHealthy: true},
		{name: "refused twice after it answered: proxy gone", kind: kindProxy, history: []outcome{refused, ok, refused, refused}, wantHealthy: false},
		{name: "refused twice after a 503: proxy gone", kind: kindProxy, history: []outcome{bad, refused, refused}, wantHealthy: false},
		{name: "proxy gone then back", kind: kindProxy, history: []outcome{ok, refused, refused, refused, ok}, wantHealthy: true},

		{name: "local ok", kind: kindLocal, history: []outcome{ok}, wantHealthy: true},
		{name: "local one 503", kind: kindLocal, history: []outcome{ok, bad}, wantHealthy: true},
		{name: "local two 503: no local endpoints", kind: kindLocal, history: []outcome{ok, bad, bad}, wantHealthy: false},
		{name: "local heals after one success", kind: kindLocal, history: []outcome{bad, bad, ok}, wantHealthy: true},
		{name: "local refused once from the start", kind: kindLocal, history: []outcome{refused}, wantHealthy: true},
		{name: "local refused twice from the start: no fallback", kind: kindLocal, history: []outcome{refused, refused}, wantHealthy: false},
		{name: "local unreachable twice", kind: kindLocal, history: []outcome{timeout, timeout}, wantHealthy: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v verdict
			for _, o := range tt.history {
				v = step(tt.kind, v, o)
			}
			if got := v.healthy(); got != tt.wantHealthy {
				t.Errorf("healthy after %v = %v, want %v", tt.history, got, tt.wantHealthy)
			}
			if v.noEndpoint != tt.wantNoEndpoint {
				t.Errorf("noEndpoint after %v = %v, want %v", tt.history, v.noEndpoint, tt.wantNoEndpoint)
			}
			if v.probed != (len(tt.history) > 0) {
				t.Errorf("probed after %v = %v", tt.history, v.probed)
			}
		})
	}
}

// TestDefaultTiming holds the defaults to the promise in DefaultInterval's
// doc: a target that stops answering is unhealthy within a second.
func TestDefaultTiming(t *testing.T) {
	worst := failureThreshold*DefaultInterval + DefaultTimeout
	if worst > time.Second {
		t.Errorf("worst-case detection %d × %v + %v = %v, want ≤ 1s", failureThreshold, DefaultInterval, DefaultTimeout, worst)
	}
}

func TestClassify(t *testing.T) {
	opErr := func(err error) error {
		return &url.Error{Op: "Get", URL: "http://198.18.0.1:10256/healthz", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}}
	}
	tests := []struct {
		name string
		err  error
		want outcome
	}{
		{name: "refused", err: opErr(syscall.ECONNREFUSED), want: outcomeRefused},
		{name: "no route to host", err: opErr(syscall.EHOSTUNREACH), want: outcomeUnreachable},
		{name: "network unreachable", err: opErr(syscall.ENETUNREACH), want: outcomeUnreachable},
		{name: "deadline", err: &url.Error{Op: "Get", URL: "u", Err: context.DeadlineExceeded}, want: outcomeUnreachable},
		{name: "reset", err: opErr(syscall.ECONNRESET), want: outcomeError},
		{name: "eof", err: &url.Error{Op: "Get", URL: "u", Err: io.EOF}, want: outcomeError},
		{name: "cancelled", err: &url.Error{Op: "Get", URL: "u", Err: context.Canceled}, want: outcomeError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestProbeURL(t *testing.T) {
	for addr, want := range map[string]string{
		"198.18.0.1":     "http://198.18.0.1:10256/healthz",
		"2001:db8:18::1": "http://[2001:db8:18::1]:10256/healthz",
	} {
		if got := probeURL(netip.MustParseAddr(addr), 10256, "/healthz"); got != want {
			t.Errorf("probeURL(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestConfirmed(t *testing.T) {
	const ok, bad, refused = outcomeOK, outcomeStatus, outcomeRefused
	for _, tt := range []struct {
		name    string
		history []outcome
		want    bool
	}{
		{name: "not probed yet", want: false},
		{name: "503 so far (kube-proxy has not programmed the Service yet)", history: []outcome{bad}, want: false},
		{name: "refused so far", history: []outcome{refused}, want: false},
		{name: "answered 200", history: []outcome{bad, ok}, want: true},
		{name: "one 503 after a 200", history: []outcome{ok, bad}, want: true},
		{name: "two 503 after a 200", history: []outcome{ok, bad, bad}, want: false},
		{name: "healed", history: []outcome{ok, bad, bad, ok}, want: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var v verdict
			for _, o := range tt.history {
				v = step(kindLocal, v, o)
			}
			if got := v.confirmed(); got != tt.want {
				t.Errorf("confirmed after %v = %v, want %v", tt.history, got, tt.want)
			}
		})
	}
}
