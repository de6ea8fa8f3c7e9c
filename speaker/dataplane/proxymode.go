package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// DefaultProxyModeURL is where kube-proxy says its mode: /proxyMode on its default metrics
// address.
const DefaultProxyModeURL = "http://127.0.0.1:10249/proxyMode"

// IPVSInterface is the dummy interface kube-proxy's IPVS mode binds every Service IP to.
const IPVSInterface = "kube-ipvs0"

// ErrIPVS says the node's kube-proxy runs in IPVS mode, which dataplane kube-proxy does not
// support: IPVS forwards VIP traffic at LOCAL_IN, after filter INPUT, where the guard drops
// every VIP packet that was not DNATed (and IPVS never DNATs in nat).
var ErrIPVS = errors.New("kube-proxy runs in IPVS mode, which dataplane kube-proxy does not support")

// ProxyProbe is how DetectIPVS looks at the node. The zero value looks at this network
// namespace.
type ProxyProbe struct {
	// ProxyMode returns the body of kube-proxy's /proxyMode, or an error if it does not
	// answer. nil: GET DefaultProxyModeURL, 2 s at most.
	ProxyMode func(ctx context.Context) (string, error)
	// HasInterface reports whether a network interface named name exists. nil:
	// net.InterfaceByName.
	HasInterface func(name string) bool
}

// DetectIPVS returns an error wrapping ErrIPVS that says how it knows if kube-proxy runs
// in IPVS mode on this node, else nil. kube-proxy's /proxyMode decides when it answers;
// when it does not (kube-proxy down, or another metrics address), the kube-ipvs0 interface
// does.
func DetectIPVS(ctx context.Context, p ProxyProbe) error {
	if p.ProxyMode == nil {
		p.ProxyMode = getProxyMode
	}
	if p.HasInterface == nil {
		p.HasInterface = func(name string) bool { _, err := net.InterfaceByName(name); return err == nil }
	}
	mode, err := p.ProxyMode(ctx)
	return ipvsVerdict(mode, err, p.HasInterface(IPVSInterface))
}

// ipvsVerdict is DetectIPVS's decision from what it saw: the /proxyMode body (or the error
// getting it) and whether kube-ipvs0 exists.
func ipvsVerdict(mode string, modeErr error, ipvsInterface bool) error {
	switch {
	case modeErr == nil && strings.TrimSpace(mode) == "ipvs":
		return fmt.Errorf("%w: %s says ipvs", ErrIPVS, DefaultProxyModeURL)
	case modeErr == nil:
		return nil
	case ipvsInterface:
		return fmt.Errorf("%w: interface %s exists, which only IPVS mode makes (%s: %v)", ErrIPVS, IPVSInterface, DefaultProxyModeURL, modeErr)
	}
	return nil
}

func getProxyMode(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, DefaultProxyModeURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(body), nil
}
