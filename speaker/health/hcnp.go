package health

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// ServiceHealth is what the health check of one Local Service reports on
// this node.
type ServiceHealth struct {
	// Port is the Service's healthCheckNodePort.
	Port uint16
	// LocalEndpoints is the number of ready endpoints of the Service on this
	// node.
	LocalEndpoints int
}

// ServerOptions configure an [HCNPServer].
type ServerOptions struct {
	// Logger logs; default klog.Background().
	Logger klog.Logger
	// Listen opens a listener; nil means net.Listen. It is called with
	// "tcp" and ":<port>" (every address of the node, both families).
	Listen func(network, addr string) (net.Listener, error)
	// ProxyHealthy reports whether the service proxy of this node is
	// healthy, the "serviceProxyHealthy" of every answer; nil means always
	// healthy.
	ProxyHealthy func() bool
}

// HCNPServer serves the healthCheckNodePorts of Local Services where no
// service proxy does (dataplane iptables), answering exactly as kube-proxy
// does (k8s.io/kubernetes pkg/proxy/healthcheck, v1.36): every path and
// method on :<port> gets
//
//	status 200 if the Service has local endpoints and the proxy is healthy,
//	  else 503
//	Content-Type: application/json
//	X-Content-Type-Options: nosniff
//	X-Load-Balancing-Endpoint-Weight: <local endpoints>
//
//	{
//		"service": {
//			"namespace": "<namespace>",
//			"name": "<name>"
//		},
//		"localEndpoints": <local endpoints>,
//		"serviceProxyHealthy": <true|false>
//	}
//
// (tab-indented, no trailing newline). A port another process already holds
// is left to it: it is skipped, logged once, and tried again at every
// SyncServices, so the server takes it once it is free.
//
// The server owns one goroutine per open port; they stop when the port is
// dropped by SyncServices, and all of them by Close. Its methods are safe for
// concurrent use.
type HCNPServer struct {
	log          klog.Logger
	listen       func(network, addr string) (net.Listener, error)
	proxyHealthy func() bool

	mu       sync.Mutex
	closed   bool
	services map[ServiceKey]*hcnp
	// failed: Services whose port could not be opened, with the port, so
	// that each failure is logged once until the port or the outcome
	// changes.
	failed  map[ServiceKey]uint16
	serving sync.WaitGroup
}

// hcnp is one Service's open port.
type hcnp struct {
	svc       ServiceKey
	port      uint16
	srv       *http.Server
	endpoints int // guarded by HCNPServer.mu
}

// NewHCNPServer returns a server that serves nothing until SyncServices.
func NewHCNPServer(opts ServerOptions) *HCNPServer {
	s := &HCNPServer{
		log:          opts.Logger,
		listen:       opts.Listen,
		proxyHealthy: opts.ProxyHealthy,
		services:     map[ServiceKey]*hcnp{},
		failed:       map[ServiceKey]uint16{},
	}
	if s.log.GetSink() == nil {
		s.log = klog.Background()
	}
	s.log = s.log.WithName("hcnp")
	if s.listen == nil {
		s.listen = net.Listen
	}
	if s.proxyHealthy == nil {
		s.proxyHealthy = func() bool { return true }
	}
	return s
}

// SyncServices makes want the set of health checks served: it closes the
// ports of Services no longer wanted (or whose port changed), opens the new
// ones, and updates the endpoint counts of the others in place. A port that
// cannot be opened, typically because another process (a kube-proxy) holds
// it, is skipped with one log line and tried again at the next call; so is
// a port that another Service in want already has. A Port of 0 is not
// served. want is not retained. After Close it does nothing.
func (s *HCNPServer) SyncServices(want map[ServiceKey]ServiceHealth) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for svc, h := range s.services {
		if w, ok := want[svc]; ok && w.Port == h.port {
			continue
		}
		s.log.V(2).Info("Closing healthcheck", "service", svc, "port", h.port)
		if err := h.srv.Close(); err != nil {
			s.log.Error(err, "Closing healthcheck", "service", svc, "port", h.port)
		}
		delete(s.services, svc)
	}
	for svc, port := range s.failed {
		if w, ok := want[svc]; !ok || w.Port != port {
			delete(s.failed, svc)
		}
	}
	ours := make(map[uint16]ServiceKey, len(s.services))
	for svc, h := range s.services {
		ours[h.port] = svc
	}
	for svc, w := range want {
		if h := s.services[svc]; h != nil {
			h.endpoints = w.LocalEndpoints
			continue
		}
		if w.Port == 0 {
			continue
		}
		if other, ok := ours[w.Port]; ok {
			s.failOnce(svc, w.Port, fmt.Errorf("health: port %d already serves %s", w.Port, other))
			continue
		}
		h, err := s.open(svc, w)
		if err != nil {
			s.failOnce(svc, w.Port, err)
			continue
		}
		delete(s.failed, svc)
		s.services[svc] = h
		ours[w.Port] = svc
	}
}

// failOnce logs that svc's port could not be opened, once per Service and
// port.
func (s *HCNPServer) failOnce(svc ServiceKey, port uint16, err error) {
	if p, ok := s.failed[svc]; ok && p == port {
		return
	}
	s.failed[svc] = port
	if errors.Is(err, syscall.EADDRINUSE) {
		s.log.Info("Healthcheck port held by another process; skipping it until it is free", "service", svc, "port", port, "err", err.Error())
		return
	}
	s.log.Error(err, "Cannot serve healthcheck; retrying at every sync", "service", svc, "port", port)
}

// open listens on svc's port and serves it from a goroutine the server owns.
func (s *HCNPServer) open(svc ServiceKey, w ServiceHealth) (*hcnp, error) {
	addr := net.JoinHostPort("", strconv.Itoa(int(w.Port)))
	ln, err := s.listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health: listen on %s for %s: %w", addr, svc, err)
	}
	h := &hcnp{svc: svc, port: w.Port, endpoints: w.LocalEndpoints}
	h.srv = &http.Server{
		Handler:           h.handler(s),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	s.log.V(2).Info("Opening healthcheck", "service", svc, "port", w.Port, "address", ln.Addr())
	s.serving.Go(func() {
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error(err, "Healthcheck stopped serving", "service", svc, "port", w.Port)
		}
	})
	return h, nil
}

// handler answers like kube-proxy's service health server.
func (h *hcnp) handler(s *HCNPServer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		count := h.endpoints
		s.mu.Unlock()
		proxyHealthy := s.proxyHealthy()

		hdr := w.Header()
		hdr.Set("Content-Type", "application/json")
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(count))
		if count != 0 && proxyHealthy {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write(responseBody(h.svc, count, proxyHealthy))
	})
}

// responseBody is kube-proxy's response body, byte for byte (its names are
// quoted with Go's %q, the same as JSON's quoting for Kubernetes names).
func responseBody(svc ServiceKey, count int, proxyHealthy bool) []byte {
	return fmt.Appendf(nil, "{\n\t\"service\": {\n\t\t\"namespace\": %q,\n\t\t\"name\": %q\n\t},\n\t\"localEndpoints\": %d,\n\t\"serviceProxyHealthy\": %t\n}",
		svc.Namespace, svc.Name, count, proxyHealthy)
}

// Close closes every port and waits for their goroutines to stop. Later
// calls of SyncServices do nothing.
func (s *HCNPServer) Close() error {
	s.mu.Lock()
	var errs []error
	if !s.closed {
		s.closed = true
		for svc, h := range s.services {
			if err := h.srv.Close(); err != nil {
				errs = append(errs, fmt.Errorf("health: close healthcheck of %s on port %d: %w", svc, h.port, err))
			}
		}
		clear(s.services)
		clear(s.failed)
	}
	s.mu.Unlock()
	s.serving.Wait()
	return errors.Join(errs...)
}
