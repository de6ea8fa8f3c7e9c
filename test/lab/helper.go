package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/onprem-lb/onprem-lb/test/backend"
)

// The lab starts its helper program (Options.Helper) with these variables to give it a role.
const (
	helperEnv     = "ONPREM_LB_LAB_HELPER"
	helperBackend = "backend"
	podEnv        = "ONPREM_LB_LAB_POD"
)

// Reply is what every lab backend answers: who answered and whom it saw.
type Reply = backend.Reply

// RunHelper turns this process into a lab helper if the lab started it as one, and then never
// returns. Programs used as Options.Helper (the lab CLI, test binaries) call it first thing.
func RunHelper() {
	switch os.Getenv(helperEnv) {
	case "":
		return
	case helperBackend:
		err := backend.Serve(os.Getenv(podEnv))
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// GetTCP connects to address from the network namespace ns and reads a backend's Reply.
func GetTCP(ctx context.Context, ns, address string) (Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := DialContext(ctx, ns, "tcp", address)
	if err != nil {
		return Reply{}, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return Reply{}, fmt.Errorf("read from %s: %w", address, err)
	}
	return decodeReply(line)
}

// GetHTTP requests url from the network namespace ns and decodes a backend's Reply.
func GetHTTP(ctx context.Context, ns, url string) (Reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Reply{}, err
	}
	resp, err := HTTPClient(ns, 3*time.Second).Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return Reply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Reply{}, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return decodeReply(body)
}

func decodeReply(b []byte) (Reply, error) {
	var r Reply
	if err := json.Unmarshal(b, &r); err != nil {
		return Reply{}, fmt.Errorf("not a backend reply %q: %w", b, err)
	}
	return r, nil
}

// RequestsDuring sends HTTP GETs to url from the network namespace ns, one every 20 ms, while
// fn runs, and returns the failed ones (when, relative to the start, and why) and how many were
// sent. before, if not nil, runs ahead of each request in the requesting goroutine with the
// number of requests sent so far.
func RequestsDuring(ctx context.Context, ns, url string, before func(n int), fn func()) (failures []string, total int) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	began := time.Now()
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if before != nil {
				before(total)
			}
			total++
			if _, err := GetHTTP(ctx, ns, url); err != nil {
				failures = append(failures, fmt.Sprintf("after %v: %v", time.Since(began).Round(time.Millisecond), err))
			}
		}
	})
	fn()
	close(stop)
	wg.Wait()
	return failures, total
}
