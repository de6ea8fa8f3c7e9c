package speaker

import "k8s.io/component-base/metrics"

// Metrics are the controller's metrics; the announcer and the pool file watcher have their
// own. They count nothing until registered.
type Metrics struct {
	owned            *metrics.Gauge
	members          *metrics.Gauge
	ownershipChanges *metrics.Counter
	handovers        *metrics.Gauge
}

// NewMetrics returns unregistered metrics:
//
//	onprem_lb_speaker_vips_owned           VIPs this node owns (announced or probing)
//	onprem_lb_speaker_members              live speakers this node sees, itself included
//	onprem_lb_speaker_ownership_changes_total  VIPs this node took or gave up
//	onprem_lb_speaker_handover_vips        VIPs whose open connections go on to their previous owner
func NewMetrics() *Metrics {
	return &Metrics{
		owned: metrics.NewGauge(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: "vips_owned",
			Help: "VIPs this node owns: it announces them, or probes them first.",
		}),
		members: metrics.NewGauge(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: "members",
			Help: "Live speakers this node sees, itself included.",
		}),
		ownershipChanges: metrics.NewCounter(&metrics.CounterOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: "ownership_changes_total",
			Help: "VIPs this node took over or gave up.",
		}),
		handovers: metrics.NewGauge(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Subsystem: "speaker", Name: "handover_vips",
			Help: "VIPs this node took over from a node still up whose open connections it forwards to that node.",
		}),
	}
}

// Register registers the metrics with register, e.g. the MustRegister of a KubeRegistry.
func (m *Metrics) Register(register func(...metrics.Registerable)) {
	register(m.owned, m.members, m.ownershipChanges, m.handovers)
}
