package health

// failureThreshold is how many consecutive failed probes make a target
// unhealthy. One success makes it healthy again.
const failureThreshold = 2

// kind is what a target is: a node's service proxy or a Local Service's
// healthCheckNodePort on one node. It is also the "kind" metric label.
type kind uint8

const (
	kindProxy kind = iota
	kindLocal
)

func (k kind) String() string {
	if k == kindProxy {
		return "proxy"
	}
	return "local"
}

// outcome is what one probe saw.
type outcome uint8

const (
	// outcomeOK: the target answered with a 2xx status.
	outcomeOK outcome = iota
	// outcomeStatus: the target answered HTTP with another status (kube-proxy
	// answers 503 when it is not healthy or has no local endpoint).
	outcomeStatus
	// outcomeRefused: the connection was refused: nothing listens on the port.
	outcomeRefused
	// outcomeUnreachable: no answer within the timeout, or no route to the
	// node.
	outcomeUnreachable
	// outcomeError: any other transport error (reset, malformed response).
	outcomeError
)

func (o outcome) String() string {
	switch o {
	case outcomeOK:
		return "ok"
	case outcomeStatus:
		return "bad status"
	case outcomeRefused:
		return "connection refused"
	case outcomeUnreachable:
		return "unreachable"
	default:
		return "error"
	}
}

// verdict is the state of one target, folded over its probe history by step.
// The zero verdict is a target not probed yet.
type verdict struct {
	// probed: at least one probe result was folded in.
	probed bool
	// answered: the target answered HTTP at least once (any status).
	answered bool
	// succeeded: the target answered 2xx at least once.
	succeeded bool
	// fails counts consecutive failed probes.
	fails int
	// noEndpoint (proxy targets only): every probe so far that reached the
	// node was refused and it never answered HTTP: the node has no service
	// proxy health endpoint, and the verdict falls back to healthy.
	noEndpoint bool
}

// healthy reports the verdict:
//   - not probed yet: healthy (the EndpointSlices already said the node may
//     serve; a fresh VIP must not wait for a probe);
//   - a proxy target without a health endpoint (noEndpoint): healthy;
//   - otherwise: healthy unless the last failureThreshold probes all failed.
func (v verdict) healthy() bool {
	return v.noEndpoint || v.fails < failureThreshold
}

// confirmed reports whether the target has answered 2xx at least once and is healthy:
// unlike healthy, a target not probed yet, or that has only failed so far, is not.
func (v verdict) confirmed() bool {
	return v.succeeded && v.healthy()
}

// step folds one probe outcome into a target's verdict. It is the whole
// verdict state machine:
//   - a 2xx answer resets the failures: one success makes a target healthy;
//   - a non-2xx answer, a timeout, an unreachable node or a transport error is
//     a failure;
//   - a refused connection is a failure, except on a proxy target that never
//     answered HTTP: there it means "no service proxy health endpoint on this
//     node" (a proxy without healthz), and the target stays healthy,
//     relying on EndpointSlices, until it answers once; from then on a
//     refusal is a failure like any other (the proxy died). A Local target's
//     refusal is always a failure: no service proxy serves that
//     healthCheckNodePort on the node.
func step(k kind, v verdict, o outcome) verdict {
	v.probed = true
	switch o {
	case outcomeOK:
		v.answered, v.succeeded = true, true
		v.noEndpoint = false
		v.fails = 0
	case outcomeRefused:
		if k == kindProxy && !v.answered {
			v.noEndpoint = true
			v.fails = 0
			return v
		}
		v.noEndpoint = false
		v.fails++
	case outcomeStatus:
		v.answered = true
		v.noEndpoint = false
		v.fails++
	default:
		v.noEndpoint = false
		v.fails++
	}
	if v.fails > failureThreshold {
		v.fails = failureThreshold // only "at least the threshold" matters
	}
	return v
}
