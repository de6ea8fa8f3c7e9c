package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// The lab starts its helper program (Options.Helper) with these variables to give it a role.
const (
	helperEnv     = "ONPREM_LB_LAB_HELPER"
	helperBackend = "backend"
	podEnv        = "ONPREM_LB_LAB_POD"
)

// Reply is what every lab backend answers: who answered and whom it saw.
type Reply struct {
	Pod    string `json:"pod"`    // namespace/name of the pod that answered
	Client string `json:"client"` // the source address:port the backend saw
}

// ClientIP returns the address part of Client.
func (r Reply) ClientIP() string {
	host, _, err := net.SplitHostPort(r.Client)
	if err != nil {
		return r.Client
	}
	return host
}

// RunHelper turns this process into a lab helper if the lab started it as one, and then never
// returns. Programs used as Options.Helper (the lab CLI, test binaries) call it first thing.
func RunHelper() {
	switch os.Getenv(helperEnv) {
	case "":
		return
	case helperBackend:
		err := serveBackend(os.Getenv(podEnv))
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// serveBackend answers HTTP on HTTPPort, plain TCP on TCPPort and each UDP datagram on
// UDPPort, over IPv4 and IPv6, with a Reply naming pod and the client address it saw. It returns only on error.
func serveBackend(pod string) error {
	reply := func(remote string) []byte {
		b, _ := json.Marshal(Reply{Pod: pod, Client: remote})
		return append(b, '\n')
	}
	tcp, err := net.Listen("tcp", ":"+strconv.Itoa(TCPPort))
	if err != nil {
		return err
	}
	httpLn, err := net.Listen("tcp", ":"+strconv.Itoa(HTTPPort))
	if err != nil {
		return err
	}
	udp, err := net.ListenPacket("udp", ":"+strconv.Itoa(UDPPort))
	if err != nil {
		return err
	}
	errc := make(chan error, 3)
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := udp.ReadFrom(buf)
			if err != nil {
				errc <- err
				return
			}
			udp.WriteTo(reply(from.String()), from)
		}
	}()
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				errc <- err
				return
			}
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write(reply(c.RemoteAddr().String()))
			c.Close()
		}
	}()
	go func() {
		errc <- http.Serve(httpLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(reply(r.RemoteAddr))
		}))
	}()
	return <-errc
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
