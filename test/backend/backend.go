// Package backend is the program behind every lab pod: it answers HTTP, TCP and UDP with the
// name of the pod that answered and the client address it saw, so a test sees where its
// traffic went and whether the client address survived.
package backend

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The ports every backend serves.
const (
	HTTPPort = 8080 // HTTP: any path but ReadyPath answers with a Reply
	TCPPort  = 9000 // plain TCP: a Reply line, then the connection closes
	UDPPort  = 9001 // UDP: each datagram is answered with a Reply
)

// ReadyPath, on HTTPPort, is the backend's readiness: GET answers 200 while it is ready and
// 503 once a PUT of "false" made it unready (a PUT of "true" makes it ready again), so that a
// test turns a real pod unready through its kubelet's readiness probe.
const ReadyPath = "/readyz"

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

// Serve answers HTTP on HTTPPort, plain TCP on TCPPort and each UDP datagram on
// UDPPort, over IPv4 and IPv6, with a Reply naming pod and the client address it saw. It returns only on error.
func Serve(pod string) error {
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
	var ready atomic.Bool
	ready.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ReadyPath, func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("PUT "+ReadyPath, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 16))
		v, err := strconv.ParseBool(strings.TrimSpace(string(body)))
		if err != nil {
			http.Error(w, `want "true" or "false"`, http.StatusBadRequest)
			return
		}
		ready.Store(v)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(reply(r.RemoteAddr))
	})
	go func() { errc <- http.Serve(httpLn, mux) }()
	return <-errc
}
