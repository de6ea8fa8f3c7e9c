package health

import "k8s.io/component-base/metrics"

// Metrics are the prober's metrics. They count nothing until registered.
// A nil *Metrics is valid and counts nothing.
type Metrics struct {
	probes    *metrics.CounterVec
	unhealthy *metrics.GaugeVec
}

// NewMetrics returns unregistered metrics:
//
//	onprem_lb_speaker_health_probes_total{kind="proxy"|"local",result="ok"|"fail"}
//	onprem_lb_speaker_unhealthy_targets{kind="proxy"|"local"}
//
// A probe of a proxy port that refuses because the node has no health
// endpoint counts as result="fail", though the node stays healthy; a Local
// target skipped because its node did not answer the proxy probe in time
// counts as a failed probe too (see [Prober]).
func NewMetrics() *Metrics {
	return &Metrics{
		probes: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: "health_probes_total",
			Help:           "Health probes of service proxies (kind=proxy) and healthCheckNodePorts (kind=local), by result.",
			StabilityLevel: metrics.ALPHA,
		}, []string{"kind", "result"}),
		unhealthy: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: "unhealthy_targets",
			Help:           "Probe targets this speaker currently judges unhealthy, by kind (proxy: nodes; local: Service and node pairs).",
			StabilityLevel: metrics.ALPHA,
		}, []string{"kind"}),
	}
}

// Register registers the metrics with register, e.g.
// legacyregistry.MustRegister or the MustRegister method of a
// metrics.KubeRegistry.
func (m *Metrics) Register(register func(...metrics.Registerable)) {
	register(m.probes, m.unhealthy)
}

func (m *Metrics) probed(k kind, o outcome) {
	if m == nil {
		return
	}
	result := "fail"
	if o == outcomeOK {
		result = "ok"
	}
	m.probes.WithLabelValues(k.String(), result).Inc()
}

func (m *Metrics) setUnhealthy(proxy, local int) {
	if m == nil {
		return
	}
	m.unhealthy.WithLabelValues(kindProxy.String()).Set(float64(proxy))
	m.unhealthy.WithLabelValues(kindLocal.String()).Set(float64(local))
}
