package lab

import (
	"archive/tar"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseCgroupMounts(t *testing.T) {
	mountinfo := `23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	mounts, v1 := parseCgroupMounts(mountinfo)
	want := []string{"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"}
	if diff := cmp.Diff(want, mounts); diff != "" || !v1 {
		t.Errorf("parseCgroupMounts: v1 %v, want true; mounts (-want +got):\n%s", v1, diff)
	}
	if _, v1 := parseCgroupMounts("30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"); v1 {
		t.Errorf("parseCgroupMounts of a cgroup v2 machine: v1 true, want false")
	}
}

// TestJoinCgroups runs the command line joinCgroups makes, with plain files standing in for
// cgroup.procs: the program it execs must be the process written into every one of them.
func TestJoinCgroups(t *testing.T) {
	var mounts []string
	for _, h := range []string{"cpu", "memory"} {
		m := filepath.Join(t.TempDir(), h)
		if err := os.MkdirAll(filepath.Join(m, "olb-node-1"), 0o755); err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, m)
	}
	argv := joinCgroups(mounts, "/olb-node-1", "sh", "-c", `echo "$$ $1"`, "sh", "-- arg with spaces")
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("%q: %v", argv, err)
	}
	pid, arg, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if arg != "-- arg with spaces" {
		t.Errorf("the program got argument %q, want %q", arg, "-- arg with spaces")
	}
	for _, m := range mounts {
		got, err := os.ReadFile(filepath.Join(m, "olb-node-1", "cgroup.procs"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(got)) != pid {
			t.Errorf("%s/olb-node-1/cgroup.procs holds %q, want the program's PID %s", m, got, pid)
		}
	}
}

func TestPickImage(t *testing.T) {
	tests := []struct {
		name    string
		images  []string
		base    string
		want    string
		wantErr bool
	}{
		{"tagged", []string{"example.org/lab/backend:v1", "example.org/lab/pause:v1"}, "pause", "example.org/lab/pause:v1", false},
		{"registry with a port, by digest", []string{"localhost:5000/pause@sha256:abcd"}, "pause", "localhost:5000/pause@sha256:abcd", false},
		{"untagged", []string{"example.org/backend"}, "backend", "example.org/backend", false},
		{"only a tag matches", []string{"example.org/lab/backend:pause"}, "pause", "", true},
		{"a longer name does not match", []string{"example.org/lab/pause-old:v1"}, "pause", "", true},
		{"none", nil, "pause", "", true},
		{"two", []string{"a/pause:v1", "b/pause:v2"}, "pause", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pickImage(tt.images, tt.base)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("pickImage(%q, %q) = %q, %v; want %q, error %v", tt.images, tt.base, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestArchiveImageNames(t *testing.T) {
	archive := func(t *testing.T, files map[string]string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), "image.tar")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w := tar.NewWriter(f)
		for name, body := range files {
			if err := w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte(body)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	index := `{"schemaVersion":2,"manifests":[
		{"digest":"sha256:1","annotations":{"io.containerd.image.name":"example.org/lab/pause:v1","org.opencontainers.image.ref.name":"v1"}},
		{"digest":"sha256:2"}]}`
	tests := []struct {
		name    string
		files   map[string]string
		want    []string
		wantErr string
	}{
		{"named", map[string]string{"oci-layout": `{}`, "./index.json": index}, []string{"example.org/lab/pause:v1"}, ""},
		{"no index", map[string]string{"manifest.json": "[]"}, nil, "not an OCI archive"},
		{"no name", map[string]string{"index.json": `{"manifests":[{"digest":"sha256:1"}]}`}, nil, "io.containerd.image.name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := archiveImageNames(archive(t, tt.files))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}

// TestCNIConfig checks node 2's network: the bridge is the gateway, addresses come from the
// upper half of both pod CIDRs (AddPod's bare pods use the lower), and pods route only the lab.
func TestCNIConfig(t *testing.T) {
	data, err := cniConfig(&Node{Host: nodeHost(2), Index: 2, PodCIDRs: podCIDRs(2)})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Plugins []struct {
			Type      string
			IsGateway bool
			IPMasq    bool
			IPAM      struct {
				Type   string
				Ranges [][]map[string]string
				Routes []map[string]string
			}
		}
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("%v:\n%s", err, data)
	}
	if len(got.Plugins) != 2 || got.Plugins[0].Type != "bridge" || got.Plugins[1].Type != "portmap" {
		t.Fatalf("plugins: %s, want bridge then portmap", data)
	}
	bridge := got.Plugins[0]
	if !bridge.IsGateway || bridge.IPMasq || bridge.IPAM.Type != "host-local" {
		t.Errorf("bridge: gateway %v masquerade %v IPAM %q, want a gateway, no masquerade, host-local", bridge.IsGateway, bridge.IPMasq, bridge.IPAM.Type)
	}
	wantRanges := [][]map[string]string{
		{{"subnet": "198.19.2.0/24", "rangeStart": "198.19.2.128", "rangeEnd": "198.19.2.254"}},
		{{"subnet": "2001:db8:19:2::/64", "rangeStart": "2001:db8:19:2::80", "rangeEnd": "2001:db8:19:2::fe"}},
	}
	if diff := cmp.Diff(wantRanges, bridge.IPAM.Ranges); diff != "" {
		t.Errorf("ranges (-want +got):\n%s", diff)
	}
	wantRoutes := []map[string]string{{"dst": "198.18.0.0/15"}, {"dst": "2001:db8::/32"}}
	if diff := cmp.Diff(wantRoutes, bridge.IPAM.Routes); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
}

// TestKubeletConfig checks what the lab's machines need of a kubelet: cgroup v1 in a cgroup
// of the node's own, the containerd socket, lab TLS, and no image GC or eviction.
func TestKubeletConfig(t *testing.T) {
	n := &Node{Host: nodeHost(1), Index: 1}
	c := kubeletConfig(n, func(name string) string { return "/pki/" + name }, 5*time.Second)
	got := map[string]string{
		"failCgroupV1":   strconv.FormatBool(*c.FailCgroupV1),
		"cgroupDriver":   c.CgroupDriver,
		"cgroupRoot":     c.CgroupRoot,
		"runtime":        c.ContainerRuntimeEndpoint,
		"clientCA":       c.Authentication.X509.ClientCAFile,
		"anonymous":      strconv.FormatBool(*c.Authentication.Anonymous.Enabled),
		"tlsCert":        c.TLSCertFile,
		"imageGCHigh":    strconv.Itoa(int(*c.ImageGCHighThresholdPercent)),
		"failSwapOn":     strconv.FormatBool(*c.FailSwapOn),
		"memoryEviction": c.EvictionHard["memory.available"],
		"diskEviction":   c.EvictionHard["nodefs.available"],
		"syncFrequency":  c.SyncFrequency.Duration.String(),
	}
	want := map[string]string{
		"failCgroupV1": "false", "cgroupDriver": "cgroupfs", "cgroupRoot": "/olb-node-1",
		"runtime": "unix:///run/containerd/containerd.sock", "clientCA": "/pki/ca.crt", "anonymous": "false",
		"tlsCert": "/pki/kubelet-node-1.crt", "imageGCHigh": "100", "failSwapOn": "false",
		"memoryEviction": "0%", "diskEviction": "0%", "syncFrequency": "5s",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kubelet configuration (-want +got):\n%s", diff)
	}
}

func TestSplitImageRef(t *testing.T) {
	for _, c := range []struct{ ref, repo, tag string }{
		{"ghcr.io/onprem-lb/onprem-speaker:v0.1.0", "ghcr.io/onprem-lb/onprem-speaker", "v0.1.0"},
		{"127.0.0.1:5000/onprem-lb/onprem-speaker", "127.0.0.1:5000/onprem-lb/onprem-speaker", ""},
		{"127.0.0.1:5000/x:abc-dirty@sha256:00ff", "127.0.0.1:5000/x", "abc-dirty"},
	} {
		if repo, tag := SplitImageRef(c.ref); repo != c.repo || tag != c.tag {
			t.Errorf("SplitImageRef(%q) = %q, %q; want %q, %q", c.ref, repo, tag, c.repo, c.tag)
		}
	}
}
