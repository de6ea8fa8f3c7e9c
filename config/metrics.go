package config

import "k8s.io/component-base/metrics"

// Metrics are the Watcher's metrics. They count nothing until registered.
type Metrics struct {
	// reloads counts the new file contents read, by result.
	reloads *metrics.CounterVec
	// lastSuccess is 1 if the last content read was valid, else 0.
	lastSuccess *metrics.Gauge
}

// NewMetrics returns unregistered metrics:
//
//	onprem_lb_config_reloads_total{result="success"|"failure"}
//	onprem_lb_config_last_reload_success  (gauge, 0 or 1)
func NewMetrics() *Metrics {
	return &Metrics{
		reloads: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "onprem_lb", Subsystem: "config", Name: "reloads_total",
			Help:           "New contents of the pool file read, by result: success (valid) or failure (invalid or unreadable; the last good config is kept).",
			StabilityLevel: metrics.ALPHA,
		}, []string{"result"}),
		lastSuccess: metrics.NewGauge(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "config", Name: "last_reload_success",
			Help:           "1 if the last content of the pool file read was valid, 0 if not.",
			StabilityLevel: metrics.ALPHA,
		}),
	}
}

// Register registers the metrics with register, e.g.
// legacyregistry.MustRegister (the registry the binaries serve on /metrics)
// or the MustRegister method of a metrics.KubeRegistry.
func (m *Metrics) Register(register func(...metrics.Registerable)) {
	register(m.reloads, m.lastSuccess)
}

// record counts one content read; m may be nil.
func (m *Metrics) record(ok bool) {
	if m == nil {
		return
	}
	result, gauge := "failure", 0.0
	if ok {
		result, gauge = "success", 1
	}
	m.reloads.WithLabelValues(result).Inc()
	m.lastSuccess.Set(gauge)
}
