package dataplane

import "k8s.io/component-base/metrics"

// Metrics are the dataplane's metrics. They count nothing until registered.
// A nil *Metrics is valid and counts nothing.
type Metrics struct {
	syncs    *metrics.CounterVec
	duration *metrics.Histogram
	rules    *metrics.GaugeVec
	refused  *metrics.GaugeVec
}

// NewMetrics returns unregistered metrics:
//
//	onprem_lb_speaker_iptables_syncs_total{result="success"|"error"}
//	onprem_lb_speaker_iptables_sync_duration_seconds
//	onprem_lb_speaker_iptables_rules{family="ipv4"|"ipv6"}
//	onprem_lb_speaker_service_proxy_unsupported{mode="ipvs"}
func NewMetrics() *Metrics {
	return &Metrics{
		syncs: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: "iptables_syncs_total",
			Help:           "iptables syncs (Sync calls and periodic resyncs), by result.",
			StabilityLevel: metrics.ALPHA,
		}, []string{"result"}),
		duration: metrics.NewHistogram(&metrics.HistogramOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: "iptables_sync_duration_seconds",
			Help:           "Time an iptables sync took, rule generation and iptables-restore included.",
			Buckets:        []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10},
			StabilityLevel: metrics.ALPHA,
		}),
		rules: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: "iptables_rules",
			Help:           "Rules in the onprem-lb chains as last applied, by IP family.",
			StabilityLevel: metrics.ALPHA,
		}, []string{"family"}),
		refused: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: "service_proxy_unsupported",
			Help:           "1 while the speaker refuses to serve from this node because its service proxy runs in an unsupported mode (label mode).",
			StabilityLevel: metrics.ALPHA,
		}, []string{"mode"}),
	}
}

// Register registers the metrics with register, e.g. the MustRegister of a
// KubeRegistry.
func (m *Metrics) Register(register func(...metrics.Registerable)) {
	register(m.syncs, m.duration, m.rules, m.refused)
}

func (m *Metrics) observeSync(seconds float64, err error) {
	if m == nil {
		return
	}
	result := "success"
	if err != nil {
		result = "error"
	}
	m.syncs.WithLabelValues(result).Inc()
	m.duration.Observe(seconds)
}

func (m *Metrics) setRules(f Family, n int) {
	if m == nil {
		return
	}
	m.rules.WithLabelValues(f.String()).Set(float64(n))
}

// SetUnsupportedProxy records that the speaker refuses to serve because the node's service
// proxy runs in mode (e.g. "ipvs").
func (m *Metrics) SetUnsupportedProxy(mode string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(mode).Set(1)
}
