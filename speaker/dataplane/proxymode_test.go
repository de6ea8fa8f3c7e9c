package dataplane

import (
	"context"
	"errors"
	"testing"
)

func TestDetectIPVS(t *testing.T) {
	refused := errors.New("connection refused")
	for _, tt := range []struct {
		name     string
		mode     string
		modeErr  error
		hasIface bool
		wantIPVS bool
	}{
		{"/proxyMode says ipvs", "ipvs", nil, true, true},
		{"/proxyMode says ipvs, no interface yet", "ipvs\n", nil, false, true},
		{"/proxyMode says iptables", "iptables", nil, false, false},
		{"/proxyMode says nftables; a kube-ipvs0 left from an earlier run", "nftables", nil, true, false},
		{"no /proxyMode, kube-ipvs0 exists", "", refused, true, true},
		{"no /proxyMode, no kube-ipvs0", "", refused, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var asked string
			err := DetectIPVS(context.Background(), ProxyProbe{
				ProxyMode:    func(context.Context) (string, error) { return tt.mode, tt.modeErr },
				HasInterface: func(name string) bool { asked = name; return tt.hasIface },
			})
			if got := errors.Is(err, ErrIPVS); got != tt.wantIPVS {
				t.Errorf("DetectIPVS: %v, want IPVS %v", err, tt.wantIPVS)
			}
			if asked != IPVSInterface {
				t.Errorf("looked for interface %q, want %q", asked, IPVSInterface)
			}
		})
	}
}
