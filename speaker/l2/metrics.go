package l2

import "k8s.io/component-base/metrics"

// Metrics are the announcer's metrics. They count nothing until registered.
// A nil *Metrics is valid and counts nothing.
type Metrics struct {
	answered      *metrics.CounterVec
	gratuitous    *metrics.CounterVec
	conflicts     *metrics.CounterVec
	ifaceErrors   *metrics.Counter
	packetDropped *metrics.CounterVec
}

// NewMetrics returns unregistered metrics:
//
//	onprem_lb_speaker_requests_answered_total{protocol="arp"|"ndp"}
//	onprem_lb_speaker_gratuitous_sent_total{protocol="arp"|"ndp"}
//	onprem_lb_speaker_conflicts_total{protocol="arp"|"ndp"}
//	onprem_lb_speaker_interface_errors_total
//	onprem_lb_speaker_packets_dropped_total{reason}
func NewMetrics() *Metrics {
	counterVec := func(name, help string, labels ...string) *metrics.CounterVec {
		return metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: name, Help: help,
			StabilityLevel: metrics.ALPHA,
		}, labels)
	}
	return &Metrics{
		answered: counterVec("requests_answered_total",
			"ARP requests and NDP neighbor solicitations answered for a VIP, by protocol.", "protocol"),
		gratuitous: counterVec("gratuitous_sent_total",
			"Gratuitous ARP packets and unsolicited neighbor advertisements sent on takeover, by protocol.", "protocol"),
		conflicts: counterVec("conflicts_total",
			"Times a VIP was found held by another host (not a cluster peer) when probed, and so not announced, by protocol.", "protocol"),
		ifaceErrors: metrics.NewCounter(&metrics.CounterOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: "interface_errors_total",
			Help:           "Interface problems met by the announcer: a configured interface missing or unusable, a socket that cannot be opened or fails.",
			StabilityLevel: metrics.ALPHA,
		}),
		packetDropped: counterVec("packets_dropped_total",
			"ARP and NDP packets read and not answered, by reason (malformed, not_announced, ...).", "reason"),
	}
}

// Register registers the metrics with register, e.g.
// legacyregistry.MustRegister or the MustRegister method of a
// metrics.KubeRegistry.
func (m *Metrics) Register(register func(...metrics.Registerable)) {
	register(m.answered, m.gratuitous, m.conflicts, m.ifaceErrors, m.packetDropped)
}

func (m *Metrics) answer(p protocol) {
	if m != nil {
		m.answered.WithLabelValues(p.String()).Inc()
	}
}

func (m *Metrics) gratuitousSent(p protocol, n int) {
	if m != nil {
		m.gratuitous.WithLabelValues(p.String()).Add(float64(n))
	}
}

func (m *Metrics) conflict(p protocol) {
	if m != nil {
		m.conflicts.WithLabelValues(p.String()).Inc()
	}
}

func (m *Metrics) interfaceError() {
	if m != nil {
		m.ifaceErrors.Inc()
	}
}

func (m *Metrics) drop(r dropReason) {
	if m != nil {
		m.packetDropped.WithLabelValues(r.String()).Inc()
	}
}
