package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
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
