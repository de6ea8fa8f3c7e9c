package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` pins named network namespaces.
const netnsDir = "/run/netns"

// InNetns runs fn on an OS thread that has entered the network namespace ns: a lab namespace
// ("olb-node-1") or the path of a namespace file ("/proc/123/ns/net", see ContainerNetns).
// Sockets that fn creates stay in ns for their whole life, so a connection dialled inside fn
// can be used anywhere afterwards. fn must not start goroutines that expect to be in ns.
func InNetns(ns string, fn func() error) error {
	file := ns
	if !filepath.IsAbs(ns) {
		file = filepath.Join(netnsDir, ns)
	}
	target, err := unix.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lab: open network namespace %s: %w", ns, err)
	}
	defer unix.Close(target)

	runtime.LockOSThread()
	origin, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: open own network namespace: %w", err)
	}
	defer unix.Close(origin)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: enter network namespace %s: %w", ns, err)
	}
	fnErr := fn()
	if err := unix.Setns(origin, unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in ns: keep it locked so that Go discards it when this
		// goroutine ends, instead of handing it to unrelated goroutines.
		return fmt.Errorf("lab: leave network namespace %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// DialContext opens a connection from inside the network namespace ns.
func DialContext(ctx context.Context, ns, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := InNetns(ns, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// HTTPClient returns an HTTP client whose connections start in the network namespace ns.
func HTTPClient(ns string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
				return DialContext(ctx, ns, network, address)
			},
			DisableKeepAlives: true,
		},
	}
}
