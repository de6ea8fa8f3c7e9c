package images

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// The Makefile's lab-test passes the directory `make images` wrote and the tag it used.
const envTag = "ONPREM_LB_IMAGE_TAG"

var names = []string{"onprem-cloud-controller-manager", "onprem-speaker", "pause", "backend"}

func built(t testing.TB) (dir, tag string) {
	t.Helper()
	dir, tag = os.Getenv(labtest.EnvImages), os.Getenv(envTag)
	if dir == "" || tag == "" {
		t.Fatalf("%s and %s are not set: run `make images` and then these tests through `make lab-test`", labtest.EnvImages, envTag)
	}
	return dir, tag
}

func read(t *testing.T, name string) *Image {
	t.Helper()
	dir, _ := built(t)
	img, err := ReadArchive(filepath.Join(dir, name+".tar"))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// unpack writes the image's file system into a fresh directory and returns it.
func unpack(t *testing.T, img *Image) string {
	t.Helper()
	root := t.TempDir()
	if err := img.Unpack(root); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestArchivesNameTheirImageAndTag(t *testing.T) {
	_, tag := built(t)
	if tag == "latest" {
		t.Fatalf("images tagged %q: the tag must name the build", tag)
	}
	for _, name := range names {
		img := read(t, name)
		if !strings.HasSuffix(img.Name, "/"+name+":"+tag) {
			t.Errorf("%s.tar names its image %q, want .../%s:%s", name, img.Name, name, tag)
		}
	}
}

func TestCCMImageRunsAsNonRootWithCABundle(t *testing.T) {
	_, tag := built(t)
	img := read(t, "onprem-cloud-controller-manager")
	if img.Config.User != "65532" {
		t.Errorf("image user %q, want 65532 (nonroot)", img.Config.User)
	}
	root := unpack(t, img)
	out := chroot(t, root, "", 65532, append(img.Config.Entrypoint, "--version")...)
	if !strings.Contains(out, tag) {
		t.Errorf("--version says %q, want the image tag %q in it", out, tag)
	}
	pem, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(pem, []byte("BEGIN CERTIFICATE")); n < 50 || !x509.NewCertPool().AppendCertsFromPEM(pem) {
		t.Errorf("CA bundle holds %d certificates, want a parseable bundle of at least 50", n)
	}
}

// The speaker's dataplane runs both iptables backends' -save and -restore for both families
// and conntrack; `onprem-speaker --cleanup` uses all of them. Here it runs from the image's
// files in a network namespace of its own and removes chains of ours from all four tables.
func TestSpeakerImageCleansBothIPTablesBackends(t *testing.T) {
	img := read(t, "onprem-speaker")
	if img.Config.User != "0" && img.Config.User != "" {
		t.Errorf("image user %q, want root: NET_ADMIN and NET_RAW only reach root", img.Config.User)
	}
	root := unpack(t, img)
	mountRuntimeFS(t, root)
	netns := newNetns(t)
	tools := []string{"iptables-nft", "iptables-legacy", "ip6tables-nft", "ip6tables-legacy"}
	for _, ipt := range tools {
		chroot(t, root, netns, 0, ipt, "-t", "filter", "-N", "ONPREM-LB-FIREWALL")
		chroot(t, root, netns, 0, ipt, "-t", "filter", "-A", "INPUT", "-j", "ONPREM-LB-FIREWALL")
		if out := chroot(t, root, netns, 0, ipt+"-save"); !strings.Contains(out, "ONPREM-LB-FIREWALL") {
			t.Fatalf("%s-save after adding a chain:\n%s", ipt, out)
		}
	}
	chroot(t, root, netns, 0, append(img.Config.Entrypoint, "--cleanup")...)
	for _, ipt := range tools {
		if out := chroot(t, root, netns, 0, ipt+"-save"); strings.Contains(out, "ONPREM-LB") {
			t.Errorf("%s-save after --cleanup still holds our chains:\n%s", ipt, out)
		}
	}
	if out := chroot(t, root, netns, 0, "iptables", "--version"); !strings.Contains(out, "nf_tables") {
		t.Errorf("iptables --version = %q: the default backend should be nf_tables, as on Debian", out)
	}
	chroot(t, root, netns, 0, "conntrack", "-L")
}

// A second build of the same tree gives byte-identical archives.
func TestImagesAreReproducible(t *testing.T) {
	dir, _ := built(t)
	again := t.TempDir()
	cmd := exec.Command("make", "-s", "images", "IMAGES_OUT="+again)
	cmd.Dir = labtest.RepoPath()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make images again: %v\n%s", err, out)
	}
	for _, name := range []string{"onprem-cloud-controller-manager", "onprem-speaker"} {
		a, b := sum(t, filepath.Join(dir, name+".tar")), sum(t, filepath.Join(again, name+".tar"))
		if a != b {
			t.Errorf("%s.tar: sha256 %s, rebuilt %s", name, a, b)
		}
	}
}

// make push puts the images in a registry under the names they were built with. The registry
// (crane's) listens on the loopback of a network namespace of the test's own.
func TestPushToARegistry(t *testing.T) {
	_, tag := built(t)
	netns := newNetns(t)
	inNetns := func(argv ...string) *exec.Cmd {
		cmd := exec.Command("nsenter", append([]string{"--net=" + netns}, argv...)...)
		cmd.Dir = labtest.RepoPath()
		return cmd
	}
	if out, err := inNetns("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v\n%s", err, out)
	}
	crane, err := exec.Command(filepath.Join(labtest.RepoPath(), "test/tools/gotool.sh"), "crane").Output()
	if err != nil {
		t.Fatalf("test/tools/gotool.sh crane: %v", err)
	}
	const registry = "127.0.0.1:5000"
	serve := inNetns(strings.TrimSpace(string(crane)), "registry", "serve", "--address", registry)
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		serve.Process.Kill()
		serve.Wait()
	})
	out := t.TempDir()
	push := inNetns("make", "-s", "push", "REGISTRY="+registry+"/onprem-lb", "IMAGES_OUT="+out)
	if b, err := push.CombinedOutput(); err != nil {
		t.Fatalf("make push: %v\n%s", err, b)
	}
	for _, name := range []string{"onprem-cloud-controller-manager", "onprem-speaker"} {
		img, err := ReadArchive(filepath.Join(out, name+".tar"))
		if err != nil {
			t.Fatal(err)
		}
		ref := registry + "/onprem-lb/" + name + ":" + tag
		got, err := inNetns(strings.TrimSpace(string(crane)), "digest", ref).Output()
		if err != nil {
			t.Fatalf("crane digest %s: %v", ref, err)
		}
		if strings.TrimSpace(string(got)) != img.Digest {
			t.Errorf("%s in the registry: digest %s, built %s", ref, got, img.Digest)
		}
	}
}

func sum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newNetns returns the path of a network namespace that lives as long as the test: that of a
// process started for it, with nothing but a loopback.
func newNetns(t *testing.T) string {
	t.Helper()
	hold := exec.Command("unshare", "--net", "--", "sleep", "600")
	if err := hold.Start(); err != nil {
		t.Fatalf("unshare --net: %v", err)
	}
	t.Cleanup(func() {
		hold.Process.Kill()
		hold.Wait()
	})
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/proc/%d/ns/net", hold.Process.Pid)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ns, err := os.Readlink(path); err == nil && ns != own {
			return path
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare --net: no new network namespace within 5s")
		}
	}
}

// mountRuntimeFS mounts what a container runtime gives every container and the tools use:
// /proc (the -save tools read /proc/net/ip_tables_names) and /dev (/dev/null).
func mountRuntimeFS(t *testing.T, root string) {
	t.Helper()
	for _, m := range []struct{ source, target, fstype string }{{"proc", "proc", "proc"}, {"/dev", "dev", ""}} {
		dir := filepath.Join(root, m.target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		flags := uintptr(0)
		if m.fstype == "" {
			flags = syscall.MS_BIND
		}
		if err := syscall.Mount(m.source, dir, m.fstype, flags, ""); err != nil {
			t.Fatalf("mount %s in the image's root: %v", m.source, err)
		}
		t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	}
}

// chroot runs argv from the image's root (in network namespace netns unless "") as uid and
// returns its output; a failure ends the test.
func chroot(t *testing.T, root, netns string, uid int, argv ...string) string {
	t.Helper()
	args := []string{fmt.Sprintf("--userspec=%d:%d", uid, uid), root}
	name := "chroot"
	if netns != "" {
		name, args = "nsenter", append([]string{"--net=" + netns, "chroot"}, args...)
	}
	cmd := exec.Command(name, append(args, argv...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in the image: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// BenchmarkImageSizes reports the size of each image's OCI archive (its compressed layers,
// what a node pulls), in MB: <name>-mb.
func BenchmarkImageSizes(b *testing.B) {
	dir, _ := built(b)
	for b.Loop() {
		for _, name := range names {
			fi, err := os.Stat(filepath.Join(dir, name+".tar"))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(fi.Size())/1e6, name+"-mb")
		}
	}
}
