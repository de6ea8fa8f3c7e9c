// Command benchreport turns `go test -bench` output into the benchmark report: one markdown
// table with every figure DESIGN.md sets a target for (target, median measured, runs), then
// every other figure, then the machine. make bench runs it.
//
//	benchreport -o BENCHMARKS.md bench-output.txt...
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// target is a figure DESIGN.md holds us to.
type target struct {
	what   string // in the words of DESIGN.md
	bench  string // benchmark name, without -N
	unit   string
	atMost float64
	show   string // the target as written
}

var targets = []target{
	{what: "Failover, owner node killed hard (node frozen + link down): client-observed outage", bench: "BenchmarkSpeakerFailover", unit: "hard-outage-ms", atMost: 1000, show: "≤ 1 s median"},
	{what: "Graceful speaker stop (pod deleted): failed requests (3 handovers per run)", bench: "BenchmarkSpeakerFailover", unit: "graceful-failed-requests", atMost: 0, show: "0"},
	{what: "Service created → EXTERNAL-IP in status", bench: "BenchmarkCCM", unit: "ip-latency-ms", atMost: 100, show: "≤ 100 ms median"},
	{what: "IP in status → VIP answers ARP", bench: "BenchmarkSpeakerFailover", unit: "arp-after-status-ms", atMost: 200, show: "≤ 200 ms"},
	{what: "10,000 LoadBalancer Services assigned through the real API server", bench: "BenchmarkCCM", unit: "assign-10k-s", atMost: 60, show: "≤ 60 s"},
	{what: "CCM restart with 10,000 Services: rebuilt, from taking the lease (rebuild-s, from the process start, also waits for the old lease)", bench: "BenchmarkCCM", unit: "rebuild-after-lead-s", atMost: 5, show: "≤ 5 s"},
	{what: "CCM restart with 10,000 Services: IP changes", bench: "BenchmarkCCM", unit: "ip-changes", atMost: 0, show: "0"},
	{what: "iptables dataplane: full sync of 10,000 Services", bench: "BenchmarkSyncFull10k", unit: "ms/sync", atMost: 2000, show: "≤ 2 s"},
	{what: "iptables dataplane: one Service changed", bench: "BenchmarkSyncOneChanged/endpoints", unit: "ms/sync", atMost: 100, show: "≤ 100 ms"},
	{what: "A failing node (kube-proxy stopped) withdraws its VIPs", bench: "BenchmarkSpeakerFailover", unit: "proxy-down-withdraw-ms", atMost: 1000, show: "≤ 1 s"},
	{what: "Speaker with 10,000 VIPs: ARP reply latency (median of 1,000)", bench: "BenchmarkSpeaker10k", unit: "reply-us", atMost: 1000, show: "≤ 1 ms"},
	{what: "Speaker with 10,000 VIPs: resident memory", bench: "BenchmarkSpeaker10k", unit: "rss-mib", atMost: 150, show: "≤ 150 MiB"},
	{what: "BGP: a node dies (frozen + link down), BFD 100 ms × 3: client-observed outage", bench: "BenchmarkBGP/bfd=100ms", unit: "outage-ms", atMost: 500, show: "≤ 500 ms median"},
	{what: "BGP: each node's speaker stopped (SIGTERM) and started, then a DaemonSet rolling update: failed requests", bench: "BenchmarkBGP/bfd=100ms", unit: "graceful-failed-requests", atMost: 0, show: "0"},
	{what: "BGP: IP in status → route at the router", bench: "BenchmarkBGP/bfd=100ms", unit: "route-after-status-ms", atMost: 200, show: "≤ 200 ms"},
	{what: "Lab with real nodes ready, warm binaries (three nodes, four images imported)", bench: "BenchmarkLab", unit: "lab-ready-s", atMost: 60, show: "≤ 60 s"},
}

func main() {
	out := flag.String("o", "BENCHMARKS.md", "report to write")
	flag.Parse()
	figures := map[string]map[string][]float64{} // bench → unit → one value per run
	for _, path := range flag.Args() {
		f, err := os.Open(path)
		if err != nil {
			fail(err)
		}
		parse(f, figures)
		f.Close()
	}
	var b strings.Builder
	write(&b, figures)
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fail(err)
	}
	fmt.Printf("wrote %s\n", *out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "benchreport:", err)
	os.Exit(1)
}

// parse reads benchmark result lines ("BenchmarkX-2  1  123 ns/op  4.5 unit ...") into
// figures.
func parse(r io.Reader, figures map[string]map[string][]float64) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		if figures[name] == nil {
			figures[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			figures[name][f[i+1]] = append(figures[name][f[i+1]], v)
		}
	}
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func format(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

func write(b *strings.Builder, figures map[string]map[string][]float64) {
	fmt.Fprintf(b, "# Benchmark report\n\nWritten by `make bench` on %s. Each figure is the median of the runs shown; lab figures come from whole scenarios in the lab (`test/e2e`), the others from Go benchmarks. Commit: %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), command("git", "describe", "--always", "--dirty"))
	b.WriteString("## Targets (DESIGN.md)\n\n| figure | target | measured | runs | met |\n|---|---|---|---|---|\n")
	used := map[string]bool{}
	for _, t := range targets {
		vs := figures[t.bench][t.unit]
		used[t.bench+" "+t.unit] = true
		if len(vs) == 0 {
			fmt.Fprintf(b, "| %s | %s | not measured (`%s` %s) | 0 | ? |\n", t.what, t.show, t.bench, t.unit)
			continue
		}
		// A target of zero (failed requests, IP changes) is missed by any run that is not.
		m, how := median(vs), "median"
		if t.atMost == 0 {
			m, how = slices.Max(vs), "worst run"
		}
		met := "yes"
		if m > t.atMost {
			met = "**no**"
		}
		fmt.Fprintf(b, "| %s | %s | %s %s (%s) | %d: %s | %s |\n", t.what, t.show, format(m), t.unit, how, len(vs), joinValues(vs), met)
	}
	b.WriteString("\n## Every other figure\n\n| benchmark | unit | median | runs |\n|---|---|---|---|\n")
	names := make([]string, 0, len(figures))
	for n := range figures {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		units := make([]string, 0, len(figures[n]))
		for u := range figures[n] {
			units = append(units, u)
		}
		slices.Sort(units)
		for _, u := range units {
			if used[n+" "+u] {
				continue
			}
			vs := figures[n][u]
			fmt.Fprintf(b, "| %s | %s | %s | %d |\n", n, u, format(median(vs)), len(vs))
		}
	}
	fmt.Fprintf(b, "\n## Machine\n\n- %d CPUs (%s), %s memory\n- kernel %s, %s\n",
		runtime.NumCPU(), cpuModel(), memTotal(), command("uname", "-r"), runtime.Version())
}

func joinValues(vs []float64) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = format(v)
	}
	return strings.Join(parts, ", ")
}

func command(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// procField returns the value of the first line of a /proc file starting with key.
func procField(path, key string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func cpuModel() string { return procField("/proc/cpuinfo", "model name") }
func memTotal() string { return procField("/proc/meminfo", "MemTotal") }
