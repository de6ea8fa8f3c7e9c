package config

import "k8s.io/component-base/metrics"

// Metrics are the Watcher's metrics. They count nothing until registered.
type Metrics struct {
	// reloads counts the new file contents read, by result.
	reloads *metrics.CounterVec
	// lastSuccess is 1 if the last content read was valid, else 0.
	lastSuccess *metrics.Gauge
	// watchFallbacks counts the times the file's directory could not be watched.
	watchFallbacks *metrics.Counter
	// restartPending is 1 while the file asks for a change only a restart applies.
	restartPending *metrics.Gauge
}

// NewMetrics returns unregistered metrics:
//
//	onprem_lb_config_reloads_total{result="success"|"failure"}
//	onprem_lb_config_last_reload_success  (gauge, 0 or 1)
//	onprem_lb_config_watch_fallbacks_total
//	onprem_lb_config_restart_pending      (gauge, 0 or 1)
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
		watchFallbacks: metrics.NewCounter(&metrics.CounterOpts{
			Namespace: "onprem_lb", Subsystem: "config", Name: "watch_fallbacks_total",
			Help:           "Times the pool file's directory could not be watched (inotify unavailable or exhausted) and the file is polled instead.",
			StabilityLevel: metrics.ALPHA,
		}),
		restartPending: metrics.NewGauge(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "config", Name: "restart_pending",
			Help:           "1 while the pool file asks for a change that only a restart applies (a new loadBalancerClass), 0 if not.",
			StabilityLevel: metrics.ALPHA,
		}),
	}
}

// Register registers the metrics with register, e.g.
// legacyregistry.MustRegister (the registry the binaries serve on /metrics)
// or the MustRegister method of a metrics.KubeRegistry.
func (m *Metrics) Register(register func(...metrics.Registerable)) {
	register(m.reloads, m.lastSuccess, m.watchFallbacks, m.restartPending)
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

// fallback counts one fallback to polling; m may be nil.
func (m *Metrics) fallback() {
	if m != nil {
		m.watchFallbacks.Inc()
	}
}

// setRestartPending sets the restart_pending gauge; m may be nil.
func (m *Metrics) setRestartPending(pending bool) {
	if m == nil {
		return
	}
	v := 0.0
	if pending {
		v = 1
	}
	m.restartPending.Set(v)
}
