package bgp

import (
	"net/netip"

	"k8s.io/component-base/metrics"
)

// Metrics are the engine's metrics. They count nothing until registered. A nil *Metrics is
// valid and counts nothing.
type Metrics struct {
	sessionUp    *metrics.GaugeVec
	bfdUp        *metrics.GaugeVec
	bfdChanges   *metrics.CounterVec
	resets       *metrics.CounterVec
	recoveries   *metrics.CounterVec
	prefixesSent *metrics.GaugeVec
	prefixesRcvd *metrics.GaugeVec
	routes       *metrics.Gauge
	withdrawals  *metrics.CounterVec
}

// NewMetrics returns unregistered metrics:
//
//	onprem_lb_bgp_session_up{peer}                 1 while the session is established
//	onprem_lb_bgp_bfd_up{peer}                     1 while the peer's BFD session is up (peers with BFD)
//	onprem_lb_bgp_bfd_state_changes_total{peer}    BFD sessions seen to go up or down
//	onprem_lb_bgp_session_resets_total{peer}       established sessions seen to go down
//	onprem_lb_bgp_session_recoveries_total{peer}   peers deleted and re-added because their session stayed down
//	onprem_lb_bgp_prefixes_sent{peer}              routes the peer has been sent
//	onprem_lb_bgp_prefixes_received{peer}          routes the peer sent (all rejected)
//	onprem_lb_bgp_routes_advertised                routes this node advertises
//	onprem_lb_bgp_withdrawals_total{reason}        routes this node stopped advertising, by why (see Withdrawn)
func NewMetrics() *Metrics {
	peer := []string{"peer"}
	return &Metrics{
		sessionUp: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "bgp", Name: "session_up",
			Help: "1 while the BGP session with the peer is established, else 0.", StabilityLevel: metrics.ALPHA,
		}, peer),
		bfdUp: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "bgp", Name: "bfd_up",
			Help: "1 while the BFD session with the peer is up, else 0; peers with BFD only.", StabilityLevel: metrics.ALPHA,
		}, peer),
		bfdChanges: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "onprem_lb", Subsystem: "bgp", Name: "bfd_state_changes_total",
			Help: "Times the BFD session with the peer was seen to go up or down.", StabilityLevel: metrics.ALPHA,
		}, peer),
		resets: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "onprem_lb", Subsystem: "bgp", Name: "session_resets_total",
			Help: "Established BGP sessions with the peer seen to go down, for any reason.", StabilityLevel: metrics.ALPHA,
		}, peer),
		recoveries: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "onprem_lb", Subsystem: "bgp", Name: "session_recoveries_total",
			Help: "Times the peer was deleted and re-added because its session stayed down while it should come up.", StabilityLevel: metrics.ALPHA,
		}, peer),
		prefixesSent: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "bgp", Name: "prefixes_sent",
			Help: "Routes the peer has been sent.", StabilityLevel: metrics.ALPHA,
		}, peer),
		prefixesRcvd: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "bgp", Name: "prefixes_received",
			Help: "Routes the peer sent; the speaker rejects them all (installs and uses none).", StabilityLevel: metrics.ALPHA,
		}, peer),
		routes: metrics.NewGauge(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "bgp", Name: "routes_advertised",
			Help: "Routes this node advertises (each to the peers it is for).", StabilityLevel: metrics.ALPHA,
		}),
		withdrawals: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "onprem_lb", Subsystem: "bgp", Name: "withdrawals_total",
			Help: "Routes this node stopped advertising, by reason.", StabilityLevel: metrics.ALPHA,
		}, []string{"reason"}),
	}
}

// Register registers the metrics with register, e.g. legacyregistry.MustRegister or the
// MustRegister method of a metrics.KubeRegistry.
func (m *Metrics) Register(register func(...metrics.Registerable)) {
	register(m.sessionUp, m.bfdUp, m.bfdChanges, m.resets, m.recoveries, m.prefixesSent, m.prefixesRcvd, m.routes, m.withdrawals)
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// observe records the state of the session with a peer, which was old before (zero: not
// seen); reset counts one session seen to go down.
func (m *Metrics) observe(old, s PeerStatus, reset bool) {
	if m == nil {
		return
	}
	a := s.Address.String()
	m.sessionUp.WithLabelValues(a).Set(bool01(s.Established))
	if s.BFD != "" {
		m.bfdUp.WithLabelValues(a).Set(bool01(s.BFD == "up"))
		if old.BFD != "" && old.BFD != s.BFD {
			m.bfdChanges.WithLabelValues(a).Inc()
		}
	}
	m.prefixesSent.WithLabelValues(a).Set(float64(s.PrefixesSent))
	m.prefixesRcvd.WithLabelValues(a).Set(float64(s.PrefixesReceived))
	if reset {
		m.resets.WithLabelValues(a).Inc()
	}
}

func (m *Metrics) recovered(peer netip.Addr) {
	if m == nil {
		return
	}
	m.recoveries.WithLabelValues(peer.String()).Inc()
}

// forget drops the series of a peer that is gone.
func (m *Metrics) forget(peer netip.Addr) {
	if m == nil {
		return
	}
	a := peer.String()
	for _, v := range []interface{ DeleteLabelValues(...string) bool }{m.sessionUp, m.bfdUp, m.bfdChanges, m.resets, m.recoveries, m.prefixesSent, m.prefixesRcvd} {
		v.DeleteLabelValues(a)
	}
}

func (m *Metrics) setRoutes(n int) {
	if m == nil {
		return
	}
	m.routes.Set(float64(n))
}

// Withdrawn counts n routes this node stopped advertising for reason: the speaker's
// WithdrawReason values.
func (m *Metrics) Withdrawn(reason string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.withdrawals.WithLabelValues(reason).Add(float64(n))
}
