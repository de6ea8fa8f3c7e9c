package provider

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// Service annotations users set to steer allocation.
const (
	// AnnotationIPs requests exact IPs, at most one per family: "198.18.0.210,2001:db8:18::210".
	AnnotationIPs = "onprem-lb.io/load-balancer-ips"
	// AnnotationPool requests a pool by name.
	AnnotationPool = "onprem-lb.io/pool"
	// AnnotationSharingKey lets Services of one namespace with the same key share an IP.
	AnnotationSharingKey = "onprem-lb.io/sharing-key"
)

// ErrInvalidService is wrapped by every error about what a Service asks for.
var ErrInvalidService = errors.New("invalid service")

// ServiceError says which field or annotation of a Service is wrong, and why.
type ServiceError struct {
	Field  string // e.g. metadata.annotations[onprem-lb.io/pool]
	Value  string
	Reason string
}

func (e *ServiceError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Reason)
}

// Unwrap makes every ServiceError match ErrInvalidService.
func (e *ServiceError) Unwrap() error { return ErrInvalidService }

func annotationField(name string) string { return "metadata.annotations[" + name + "]" }

// keyOf returns the ipam key of a Service.
func keyOf(svc *corev1.Service) ipam.ServiceKey {
	return ipam.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
}

// requestFor translates a Service into an ipam request. It reads spec.loadBalancerIP, the
// annotations, spec.ipFamilies and spec.ipFamilyPolicy, the ports and, for
// externalTrafficPolicy Local, the pod selector. It does not modify svc.
func requestFor(svc *corev1.Service) (ipam.Request, error) {
	req := ipam.Request{
		Service:    keyOf(svc),
		Labels:     svc.Labels,
		Policy:     ipam.IPFamilyPolicy(ptr.Deref(svc.Spec.IPFamilyPolicy, "")),
		SharingKey: svc.Annotations[AnnotationSharingKey],
		Pool:       svc.Annotations[AnnotationPool],
	}
	for _, f := range svc.Spec.IPFamilies {
		req.Families = append(req.Families, ipam.Family(f))
	}
	ips, err := requestedIPs(svc)
	if err != nil {
		return ipam.Request{}, err
	}
	req.IPs = ips
	if _, ok := svc.Annotations[AnnotationPool]; ok {
		if errs := validation.IsDNS1123Label(req.Pool); len(errs) > 0 {
			return ipam.Request{}, &ServiceError{annotationField(AnnotationPool), req.Pool, "not a pool name: " + strings.Join(errs, "; ")}
		}
	}
	if _, ok := svc.Annotations[AnnotationSharingKey]; ok {
		if errs := validation.IsValidLabelValue(req.SharingKey); len(errs) > 0 || req.SharingKey == "" {
			return ipam.Request{}, &ServiceError{annotationField(AnnotationSharingKey), req.SharingKey, "must be a non-empty label value (63 characters: letters, digits, '-', '_', '.')"}
		}
	}
	for _, p := range svc.Spec.Ports {
		req.Ports = append(req.Ports, ipam.Port{Protocol: ipam.Protocol(p.Protocol), Port: uint16(p.Port)})
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		req.PodSelector = labels.SelectorFromSet(svc.Spec.Selector).String()
	}
	return req, nil
}

// requestedIPs parses spec.loadBalancerIP and the IPs annotation: at most one IP per family,
// and where both name an IP of one family, the same one.
func requestedIPs(svc *corev1.Service) ([]netip.Addr, error) {
	var ips []netip.Addr
	byFamily := map[ipam.Family]netip.Addr{}
	add := func(field, s string) error {
		ip, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || ip.Zone() != "" || ip.Is4In6() {
			return &ServiceError{field, s, "not an IPv4 or IPv6 address"}
		}
		f := ipam.FamilyOf(ip)
		if prev, ok := byFamily[f]; ok {
			if prev == ip {
				return nil
			}
			return &ServiceError{field, s, fmt.Sprintf("asks for a second %s address besides %s; at most one per family", f, prev)}
		}
		byFamily[f] = ip
		ips = append(ips, ip)
		return nil
	}
	if svc.Spec.LoadBalancerIP != "" {
		if err := add("spec.loadBalancerIP", svc.Spec.LoadBalancerIP); err != nil {
			return nil, err
		}
	}
	if value, ok := svc.Annotations[AnnotationIPs]; ok {
		field := annotationField(AnnotationIPs)
		if strings.TrimSpace(value) == "" {
			return nil, &ServiceError{field, value, "empty: list one IP per family, comma-separated"}
		}
		for _, s := range strings.Split(value, ",") {
			if err := add(field, s); err != nil {
				return nil, err
			}
		}
	}
	return ips, nil
}
