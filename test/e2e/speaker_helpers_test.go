package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/onprem-lb/onprem-lb/speaker"
	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// macOf returns the MAC of eth0 of a lab host.
func macOf(ctx context.Context, t testing.TB, h *lab.Host) string {
	t.Helper()
	out, err := h.Exec(ctx, "cat", "/sys/class/net/eth0/address")
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToLower(strings.TrimSpace(out))
}

var (
	arpingReply = regexp.MustCompile(`from ([0-9a-fA-F:]{17}) \(`)
	ndiscReply  = regexp.MustCompile(`Target link-layer address: ([0-9a-fA-F:]{17})`)
)

// answering asks from host h, with the real tools, who answers for ip: arping (3 requests)
// for IPv4, ndisc6 (3 solicitations, every reply) for IPv6. It returns the distinct MACs
// that answered, lower case, sorted; none if nobody did.
func answering(ctx context.Context, h *lab.Host, ip string) ([]string, error) {
	var out string
	var err error
	re := arpingReply
	if strings.Contains(ip, ":") {
		re = ndiscReply
		out, err = h.Exec(ctx, "ndisc6", "-m", "-n", "-r", "3", "-w", "300", ip, "eth0")
	} else {
		out, err = h.Exec(ctx, "arping", "-c", "3", "-w", "0.3", "-i", "eth0", ip)
	}
	if err != nil && !strings.Contains(err.Error(), "exit status") {
		return nil, err // not "nobody answered"
	}
	var macs []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		macs = append(macs, strings.ToLower(m[1]))
	}
	slices.Sort(macs)
	return slices.Compact(macs), nil
}

// waitAnswering waits until exactly want answers for ip from h.
func waitAnswering(ctx context.Context, t testing.TB, h *lab.Host, ip, want string) {
	t.Helper()
	var got []string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		got, err = answering(ctx, h, ip)
		return err == nil && slices.Equal(got, []string{want}), err
	})
	if err != nil {
		t.Fatalf("%s: answered by %v, want only %s: %v", ip, got, want, err)
	}
}

// waitCondition waits for the Service's condition of the family of ip to have status and
// reason, and returns its message.
func waitCondition(ctx context.Context, t testing.TB, l *lab.Lab, ns, name, ip string, status metav1.ConditionStatus, reason string) string {
	t.Helper()
	typ := speaker.ConditionType(netip.MustParseAddr(ip))
	var cond *metav1.Condition
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		svc, err := l.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		cond = meta.FindStatusCondition(svc.Status.Conditions, typ)
		return cond != nil && cond.Status == status && cond.Reason == reason && strings.Contains(cond.Message, ip), nil
	})
	if err != nil {
		t.Fatalf("Service %s/%s: condition %s is %+v, want %s %s for %s\nevents: %s", ns, name, typ, cond, status, reason, ip, events(ctx, l, ns, name))
	}
	return cond.Message
}

// announcer waits until the Service's IP is announced by a node other than except (may be
// "") and returns that node.
func announcer(ctx context.Context, t testing.TB, l *lab.Lab, ns, name, ip, except string) *lab.Node {
	t.Helper()
	var node string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		svc, err := l.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		var announced bool
		node, announced = demo.AnnouncedBy(svc, ip)
		return announced && node != except, nil
	})
	if err != nil {
		t.Fatalf("Service %s/%s: %s announced by %q, want another node than %q: %v\nevents: %s", ns, name, ip, node, except, err, events(ctx, l, ns, name))
	}
	return labtest.Node(t, l, node)
}

// waitGet requests url from host h until a backend answers (the service proxy may not have
// synced yet), and returns the reply.
func waitGet(ctx context.Context, t testing.TB, h *lab.Host, url string) lab.Reply {
	t.Helper()
	var r lab.Reply
	var failures []string
	began := time.Now()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		if r, err = lab.GetHTTP(ctx, h.NS, url); err != nil {
			failures = append(failures, fmt.Sprintf("after %v: %v", time.Since(began).Round(time.Millisecond), err))
		}
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("GET %s from %s: %v:\n%s", url, h.Name, err, strings.Join(failures, "\n"))
	}
	if len(failures) > 0 {
		t.Logf("GET %s from %s answered after %d failures:\n%s", url, h.Name, len(failures), strings.Join(failures, "\n"))
	}
	return r
}

// localService is externalTrafficPolicy Local.
func localService(svc *corev1.Service) {
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

// keepAlive is one TCP connection to port 80 of a VIP that carries HTTP requests one after
// the other, as a client's connection pool does.
type keepAlive struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialKeepAlive opens a keepAlive connection from host h to vip:80.
func dialKeepAlive(ctx context.Context, t testing.TB, h *lab.Host, vip string) *keepAlive {
	t.Helper()
	conn, err := lab.DialContext(ctx, h.NS, "tcp", net.JoinHostPort(vip, "80"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &keepAlive{conn: conn, r: bufio.NewReader(conn)}
}

// get sends one request on the connection and returns the reply (an error fails t and
// returns no reply); when says when, for the failure message.
func (k *keepAlive) get(t testing.TB, when string) lab.Reply {
	t.Helper()
	k.conn.SetDeadline(time.Now().Add(5 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, "http://"+k.conn.RemoteAddr().String()+"/", nil)
	var r lab.Reply
	err := req.Write(k.conn)
	if err == nil {
		var resp *http.Response
		if resp, err = http.ReadResponse(k.r, req); err == nil {
			err = json.NewDecoder(resp.Body).Decode(&r)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	if err != nil {
		t.Errorf("GET on the connection %s → %s open since before, %s: %v", k.conn.LocalAddr(), k.conn.RemoteAddr(), when, err)
	}
	return r
}

// waitServable waits until n's speaker counts want members and judges every node's service
// proxy healthy: from then on, by that speaker's inputs, every node may serve again. After a
// node comes back, its proxy's health is probed again by each speaker: until then ownership
// may still move.
func waitServable(ctx context.Context, t testing.TB, l *lab.Lab, n *lab.Node, want int) {
	t.Helper()
	url := "http://" + net.JoinHostPort(n.IPv4.String(), "7472") + "/metrics"
	var members, unhealthy float64
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		resp, err := lab.HTTPClient(l.ControlPlane.NS, time.Second).Get(url)
		if err != nil {
			return false, nil
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		members = metricValue(string(body), "onprem_lb_speaker_members")
		unhealthy = metricValue(string(body), `onprem_lb_speaker_unhealthy_targets{kind="proxy"}`)
		return members == float64(want) && unhealthy == 0, nil
	})
	if err != nil {
		t.Fatalf("the speaker of %s sees %v members and %v unhealthy service proxies, want %d and 0: %v", n.Name, members, unhealthy, want, err)
	}
}
