package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// errStatus is wrapped by the error of a probe answered with a non-2xx
// status.
var errStatus = errors.New("unhealthy status")

// maxBody is how much of a probe's response body is read (and discarded) so
// that the connection can be reused.
const maxBody = 4 << 10

// newTransport returns the default transport of a Prober: no HTTP proxy from
// the environment, a dial timeout, one idle keep-alive connection per target
// (a round reuses the previous round's), no compression.
func newTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: timeout,
		DisableCompression:    true,
	}
}

func probeURL(addr netip.Addr, port uint16, path string) string {
	return "http://" + netip.AddrPortFrom(addr, port).String() + path
}

// probe GETs url once, within the prober's timeout, and classifies what it
// saw. The error says why a probe failed; it is nil for outcomeOK.
func (p *Prober) probe(ctx context.Context, url string) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return outcomeError, fmt.Errorf("health: probe %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "onprem-speaker")
	resp, err := p.client.Do(req)
	if err != nil {
		return classify(err), fmt.Errorf("health: probe %s: %w", url, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return outcomeStatus, fmt.Errorf("health: probe %s: %w %d", url, errStatus, resp.StatusCode)
	}
	return outcomeOK, nil
}

// classify maps a failed request's error to an outcome.
func classify(err error) outcome {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return outcomeRefused
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH),
		errors.As(err, &ne) && ne.Timeout():
		return outcomeUnreachable
	default:
		return outcomeError
	}
}
