package bgp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/klog/v2"
)

// The engine under test runs in a helper process in the node's network namespace (a thread
// of this process could enter it, but GoBGP's goroutines would not reliably run there): this
// test binary again, under `ip netns exec`, running TestHelperEngine. The test sends it one
// JSON request per line on its standard input; it answers each with one line on its standard
// output that starts with helperPrefix (other lines, such as the testing package's, are not
// answers).

// helperEnv, set to the engine's ASN and router ID ("64512 198.18.250.2"), makes
// TestHelperEngine run the engine.
const helperEnv = "OBT_BGP_ENGINE_HELPER"

const helperPrefix = "OBT-ANSWER "

type helperRequest struct {
	Op     string // "peers", "routes", "gshut", "withdraw" or "status"
	Peers  []Peer
	Routes []Route
}

type helperAnswer struct {
	Err   string
	Peers []PeerStatus
}

// TestHelperEngine is the helper process, not a test: it skips unless helperEnv is set.
func TestHelperEngine(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("the helper process of TestFRR")
	}
	var asn uint32
	var id string
	if _, err := fmt.Sscan(spec, &asn, &id); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{ASN: asn, RouterID: netip.MustParseAddr(id), Logger: klog.Background(),
		PollInterval: 100 * time.Millisecond, Metrics: NewMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 64<<20)
	for in.Scan() {
		var req helperRequest
		err := json.Unmarshal(in.Bytes(), &req)
		if err == nil {
			switch req.Op {
			case "peers":
				err = e.SetPeers(ctx, req.Peers)
			case "routes":
				err = e.SetRoutes(ctx, req.Routes)
			case "gshut":
				err = e.SetGracefulShutdown(ctx, true)
			case "withdraw":
				err = e.WithdrawAll(ctx)
			case "status":
			default:
				err = fmt.Errorf("unknown op %q", req.Op)
			}
		}
		a := helperAnswer{Peers: e.Peers()}
		if err != nil {
			a.Err = err.Error()
		}
		data, _ := json.Marshal(a)
		fmt.Printf("%s%s\n", helperPrefix, data)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// helper is a running helper process.
type helper struct {
	cmd *exec.Cmd
	log string

	mu  sync.Mutex // one request at a time
	in  io.WriteCloser
	out *bufio.Reader
}

// startHelper runs the engine of ASN asn and router ID id in the network namespace ns, with
// its log in logPath. t's cleanup ends it.
func startHelper(t *testing.T, ns string, asn uint32, id netip.Addr, logPath string) *helper {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestHelperEngine$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s", helperEnv, asn, id))
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	h := &helper{cmd: cmd, log: logPath}
	if h.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.out = bufio.NewReaderSize(out, 1<<20)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		h.in.Close() // the helper stops its engine (closing the sessions) and exits
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil { // e.g. the race detector's exit status
				t.Errorf("helper: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("helper still running 10 s after its input closed: killed")
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("helper log ends with:\n%s", tail(h.log, 40))
		}
	})
	return h
}

// do sends req and returns the answer.
func (h *helper) do(req helperRequest) ([]PeerStatus, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := h.in.Write(append(data, '\n')); err != nil {
		return nil, err
	}
	for {
		line, err := h.out.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("helper: %w", err)
		}
		if answer, ok := strings.CutPrefix(line, helperPrefix); ok {
			var a helperAnswer
			if err := json.Unmarshal([]byte(answer), &a); err != nil {
				return nil, err
			}
			if a.Err != "" {
				return a.Peers, errors.New(a.Err)
			}
			return a.Peers, nil
		}
	}
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
