package provider

import (
	"k8s.io/component-base/metrics"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// RegisterFunc registers metrics, e.g. legacyregistry.MustRegister, whose registry the
// cloud-controller-manager serves on /metrics.
type RegisterFunc func(...metrics.Registerable)

// providerMetrics are the provider's metrics on the CCM's /metrics.
type providerMetrics struct {
	addresses   *metrics.GaugeVec   // pool, family
	inUse       *metrics.GaugeVec   // pool, family
	allocations *metrics.CounterVec // pool
	failures    *metrics.CounterVec // reason
	releases    *metrics.Counter
}

func newMetrics(register RegisterFunc) *providerMetrics {
	m := &providerMetrics{
		addresses: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Name: "pool_addresses",
			Help: "Addresses that can be handed out, per pool and IP family (saturates at 2^64-1).",
		}, []string{"pool", "family"}),
		inUse: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "onprem_lb", Name: "pool_addresses_in_use",
			Help: "Addresses held by at least one Service, per pool and IP family.",
		}, []string{"pool", "family"}),
		allocations: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "onprem_lb", Name: "allocations_total",
			Help: "Addresses given to Services, per pool.",
		}, []string{"pool"}),
		failures: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "onprem_lb", Name: "allocation_failures_total",
			Help: "Requests for addresses that could not be met, per reason (e.g. PoolExhausted, IPInUse).",
		}, []string{"reason"}),
		releases: metrics.NewCounter(&metrics.CounterOpts{
			Namespace: "onprem_lb", Name: "releases_total",
			Help: "Services whose addresses were released.",
		}),
	}
	if register != nil {
		register(m.addresses, m.inUse, m.allocations, m.failures, m.releases)
	}
	return m
}

// setStats publishes the allocator's per-pool counts, dropping pools that no longer exist.
func (m *providerMetrics) setStats(stats []ipam.PoolStats) {
	m.addresses.Reset()
	m.inUse.Reset()
	for _, s := range stats {
		m.addresses.WithLabelValues(s.Pool, string(s.Family)).Set(float64(s.Total))
		m.inUse.WithLabelValues(s.Pool, string(s.Family)).Set(float64(s.InUse))
	}
}
