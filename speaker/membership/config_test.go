package membership

import (
	"errors"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/memberlist"
)

func TestNewValidation(t *testing.T) {
	addr := netip.MustParseAddr("198.18.0.11")
	valid := func() Config { return Config{Name: "node-1", BindAddr: addr} }
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr bool
	}{
		{name: "minimal", mutate: func(*Config) {}},
		{name: "AES-128 key", mutate: func(c *Config) { c.SecretKeys = [][]byte{make([]byte, 16)} }},
		{name: "AES-192 key", mutate: func(c *Config) { c.SecretKeys = [][]byte{make([]byte, 24)} }},
		{name: "AES-256 key", mutate: func(c *Config) { c.SecretKeys = [][]byte{make([]byte, 32)} }},
		{name: "IPv6 address", mutate: func(c *Config) { c.BindAddr = netip.MustParseAddr("2001:db8:18::11") }},
		{name: "meta at the limit", mutate: func(c *Config) { c.Meta = make([]byte, memberlist.MetaMaxSize) }},
		{name: "empty name", mutate: func(c *Config) { c.Name = "" }, wantErr: true},
		{name: "no address", mutate: func(c *Config) { c.BindAddr = netip.Addr{} }, wantErr: true},
		{name: "unspecified IPv4", mutate: func(c *Config) { c.BindAddr = netip.IPv4Unspecified() }, wantErr: true},
		{name: "unspecified IPv6", mutate: func(c *Config) { c.BindAddr = netip.IPv6Unspecified() }, wantErr: true},
		{name: "multicast", mutate: func(c *Config) { c.BindAddr = netip.MustParseAddr("224.0.0.1") }, wantErr: true},
		{name: "zone", mutate: func(c *Config) { c.BindAddr = netip.MustParseAddr("fe80::1%eth0") }, wantErr: true},
		{name: "negative port", mutate: func(c *Config) { c.Port = -1 }, wantErr: true},
		{name: "port too large", mutate: func(c *Config) { c.Port = 65536 }, wantErr: true},
		{name: "key of 15 bytes", mutate: func(c *Config) { c.SecretKeys = [][]byte{make([]byte, 15)} }, wantErr: true},
		{name: "key of 33 bytes", mutate: func(c *Config) { c.SecretKeys = [][]byte{make([]byte, 33)} }, wantErr: true},
		{name: "keyring of three", mutate: func(c *Config) { c.SecretKeys = [][]byte{make([]byte, 32), make([]byte, 16), make([]byte, 24)} }},
		{name: "second key of 15 bytes", mutate: func(c *Config) { c.SecretKeys = [][]byte{make([]byte, 32), make([]byte, 15)} }, wantErr: true},
		{name: "meta too large", mutate: func(c *Config) { c.Meta = make([]byte, memberlist.MetaMaxSize+1) }, wantErr: true},
		{name: "negative probe interval", mutate: func(c *Config) { c.Timing.ProbeInterval = -time.Second }, wantErr: true},
		{name: "probe timeout not below interval", mutate: func(c *Config) {
			c.Timing.ProbeInterval, c.Timing.ProbeTimeout = 100*time.Millisecond, 100*time.Millisecond
		}, wantErr: true},
		{name: "negative suspicion mult", mutate: func(c *Config) { c.Timing.SuspicionMult = -1 }, wantErr: true},
		{name: "negative rejoin interval", mutate: func(c *Config) { c.Timing.RejoinInterval = -1 }, wantErr: true},
		{name: "negative converge timeout", mutate: func(c *Config) { c.ConvergeTimeout = -1 }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.mutate(&cfg)
			m, err := New(cfg)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("New() error = %v, want one wrapping ErrInvalidConfig", err)
				}
				if m != nil {
					t.Errorf("New() = %v, want nil with an error", m)
				}
				return
			}
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	key := []byte("0123456789abcdef")
	cfg := Config{
		Name:       "node-1",
		BindAddr:   netip.MustParseAddr("::ffff:198.18.0.11"),
		SecretKeys: [][]byte{key},
		Meta:       []byte("02:00:00:00:00:01"),
		Timing:     Timing{ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 80 * time.Millisecond},
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	want := Config{
		Name:       "node-1",
		BindAddr:   netip.MustParseAddr("198.18.0.11"), // unmapped
		Port:       DefaultPort,
		SecretKeys: [][]byte{key},
		Meta:       []byte("02:00:00:00:00:01"),
		Timing: Timing{
			ProbeInterval:           200 * time.Millisecond,
			ProbeTimeout:            80 * time.Millisecond,
			GossipInterval:          DefaultTiming().GossipInterval,
			PushPullInterval:        DefaultTiming().PushPullInterval,
			SuspicionMult:           DefaultTiming().SuspicionMult,
			SuspicionMaxTimeoutMult: DefaultTiming().SuspicionMaxTimeoutMult,
			RejoinInterval:          DefaultTiming().RejoinInterval,
		},
		ConvergeTimeout: DefaultConvergeTimeout,
	}
	opts := cmp.Options{cmpopts.IgnoreFields(Config{}, "Peers", "Logger"), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })}
	if diff := cmp.Diff(want, m.cfg, opts); diff != "" {
		t.Errorf("New() config mismatch (-want +got):\n%s", diff)
	}
	// New copies what it keeps: the caller may reuse its slices.
	key[0], cfg.Meta[0] = 'X', 'X'
	if m.cfg.SecretKeys[0][0] == 'X' || m.cfg.Meta[0] == 'X' {
		t.Errorf("New() kept the caller's slices")
	}
	if z, _ := New(Config{Name: "n", BindAddr: netip.MustParseAddr("198.18.0.11")}); z.cfg.Timing != DefaultTiming() {
		t.Errorf("zero Timing = %+v, want DefaultTiming() %+v", z.cfg.Timing, DefaultTiming())
	}
}

func TestPeersWithPort(t *testing.T) {
	cfg := Config{
		Name:     "node-1",
		BindAddr: netip.MustParseAddr("198.18.0.11"),
		Port:     7000,
		Peers: func() []netip.Addr {
			return []netip.Addr{netip.MustParseAddr("198.18.0.12"), {}, netip.MustParseAddr("::ffff:198.18.0.13"), netip.MustParseAddr("2001:db8::1")}
		},
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{
		netip.MustParseAddrPort("198.18.0.12:7000"),
		netip.MustParseAddrPort("198.18.0.13:7000"),
		netip.MustParseAddrPort("[2001:db8::1]:7000"),
	}
	if diff := cmp.Diff(want, m.peers(), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("peers() mismatch (-want +got):\n%s", diff)
	}
	cfg.Peers = nil
	if m, _ = New(cfg); m.peers() != nil {
		t.Errorf("peers() = %v with no Peers func, want nil", m.peers())
	}
}

func TestJoinTargets(t *testing.T) {
	ap := netip.MustParseAddrPort
	self := ap("198.18.0.11:7946")
	tests := []struct {
		name    string
		peers   []netip.AddrPort
		members []netip.AddrPort
		want    []netip.AddrPort
	}{
		{name: "no peers"},
		{name: "only self", peers: []netip.AddrPort{self}, members: []netip.AddrPort{self}},
		{
			name:    "skips self and members, keeps order",
			peers:   []netip.AddrPort{ap("198.18.0.13:7946"), self, ap("198.18.0.12:7946"), ap("198.18.0.14:7946")},
			members: []netip.AddrPort{self, ap("198.18.0.12:7946")},
			want:    []netip.AddrPort{ap("198.18.0.13:7946"), ap("198.18.0.14:7946")},
		},
		{
			name:  "duplicates and 4in6 collapse",
			peers: []netip.AddrPort{ap("198.18.0.12:7946"), ap("[::ffff:198.18.0.12]:7946"), ap("198.18.0.12:7946")},
			want:  []netip.AddrPort{ap("198.18.0.12:7946")},
		},
		{
			name:    "same address, other port is another peer",
			peers:   []netip.AddrPort{ap("198.18.0.11:7947")},
			members: []netip.AddrPort{self},
			want:    []netip.AddrPort{ap("198.18.0.11:7947")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := joinTargets(tt.peers, self, tt.members)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("joinTargets() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDefaultTimingArithmetic checks DefaultTiming's comment against
// memberlist's formula: sub-second detection up to 100 members.
func TestDefaultTimingArithmetic(t *testing.T) {
	d := DefaultTiming()
	if d.SuspicionMult > 2 {
		t.Errorf("SuspicionMult = %d: memberlist would wait for %d confirmations, starting at %d× the timeout",
			d.SuspicionMult, d.SuspicionMult-2, d.SuspicionMaxTimeoutMult)
	}
	tests := []struct {
		n              int
		wantSuspicion  time.Duration
		maxDetectBound time.Duration
	}{
		{n: 3, wantSuspicion: 200 * time.Millisecond, maxDetectBound: 600 * time.Millisecond},
		{n: 10, wantSuspicion: 200 * time.Millisecond, maxDetectBound: 700 * time.Millisecond},
		{n: 100, wantSuspicion: 400 * time.Millisecond, maxDetectBound: 900 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := d.suspicionTimeout(tt.n); got != tt.wantSuspicion {
			t.Errorf("suspicionTimeout(%d) = %v, want %v", tt.n, got, tt.wantSuspicion)
		}
		if got := d.detectionEstimate(tt.n); got > tt.maxDetectBound {
			t.Errorf("detectionEstimate(%d) = %v, want ≤ %v", tt.n, got, tt.maxDetectBound)
		}
	}
}

func TestLogWriter(t *testing.T) {
	// Only checks that lines of every shape are consumed whole.
	w := &logWriter{logger: testLogger(t)}
	for _, line := range []string{"[DEBUG] memberlist: Stream connection from=x\n", "[ERR] memberlist: oops\n", "no level\n", "[broken"} {
		if n, err := w.Write([]byte(line)); n != len(line) || err != nil {
			t.Errorf("Write(%q) = %d, %v; want %d, nil", line, n, err, len(line))
		}
	}
}

// suspicionTimeout is memberlist's formula (util.go): how long a member stays
// suspect among n members before it is declared dead, with no confirmations
// expected (SuspicionMult ≤ 2).
func (t Timing) suspicionTimeout(n int) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	return time.Duration(float64(t.SuspicionMult) * scale * float64(t.ProbeInterval))
}

// detectionEstimate is the expected worst case, on a healthy LAN, between a
// member dying and every other member of n having declared it dead: the
// steps of DefaultTiming's comment, with two probe intervals of waiting for
// a probe and log3(n) gossip rounds.
func (t Timing) detectionEstimate(n int) time.Duration {
	gossipRounds := math.Ceil(math.Log(math.Max(3, float64(n))) / math.Log(3))
	return 2*t.ProbeInterval + t.ProbeInterval + t.suspicionTimeout(n) +
		time.Duration(gossipRounds)*t.GossipInterval
}
