package chart

import (
	"encoding/base64"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// The objects the tests look into.
const (
	ccmDeployment    = "Deployment onprem-lb/onprem-cloud-controller-manager"
	speakerDaemonSet = "DaemonSet onprem-lb/onprem-speaker"
	memberlistSecret = "Secret onprem-lb/onprem-speaker-memberlist"
)

// chartOnly are the objects the chart renders by default that manifests/ do not have, and why.
var chartOnly = map[string]string{
	memberlistSecret: "the speakers' gossip key: manifests/ ask the user to create it once; " +
		"the chart makes a random one at install and keeps it on upgrade",
}

// TestDefaultRenderIsManifests: `helm template` with the chart's defaults gives the objects of
// `kubectl kustomize manifests/`, field for field (the pool file by content), but for
// chartOnly. An edit of one and not the other fails here.
func TestDefaultRenderIsManifests(t *testing.T) {
	want := kustomize(t, "manifests")
	got := without(t, render(t), slices.Collect(maps.Keys(chartOnly))...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("helm template charts/onprem-lb differs from kubectl kustomize manifests/: change both (-manifests +chart):\n%s", diff)
	}
}

// TestCleanupRenderIsManifestsCleanup: with cleanup.enabled the chart renders the cleanup
// DaemonSet of `kubectl kustomize manifests/cleanup` in place of the speakers, and the rest
// as before.
func TestCleanupRenderIsManifestsCleanup(t *testing.T) {
	want := without(t, kustomize(t, "manifests"), speakerDaemonSet)
	maps.Copy(want, kustomize(t, "manifests", "cleanup"))
	got := without(t, render(t, "--set", "cleanup.enabled=true"), slices.Collect(maps.Keys(chartOnly))...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("helm template --set cleanup.enabled=true differs from manifests/ with manifests/cleanup/ for the speakers: change both (-manifests +chart):\n%s", diff)
	}
}

// TestGossipKey: the Secret the chart makes holds one key as the speaker reads it (the base64
// of 32 bytes), a new one at every install: never a key shipped in the chart.
func TestGossipKey(t *testing.T) {
	first, second := gossipKey(t, render(t)[memberlistSecret]), gossipKey(t, render(t)[memberlistSecret])
	if first == second {
		t.Errorf("two renders made the same gossip key %q: it must be random", first)
	}
}

// gossipKey returns the key file of a gossip Secret, failing the test unless it is one key,
// the base64 of 32 bytes.
func gossipKey(t *testing.T, secret map[string]any) string {
	t.Helper()
	encoded, _ := get(t, secret, "data", "key").(string)
	data, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		t.Fatalf("%s: data.key is not base64: %v", key(secret), err)
	}
	raw, err := base64.StdEncoding.DecodeString(string(data))
	if err != nil || len(raw) != 32 {
		t.Fatalf("%s: the key file %q is not the base64 of 32 bytes (%d bytes, %v)", key(secret), data, len(raw), err)
	}
	return string(data)
}

// TestValues: each value changes the objects it names, as a user would read them in
// `helm template`, and nothing else.
func TestValues(t *testing.T) {
	base := render(t)
	maskGossipKey(t, base)
	tests := []struct {
		name   string
		args   []string // to helm template
		values string   // a values file, if not ""
		want   func(t *testing.T, objs objects)
	}{
		{
			name: "image.registry and image.tag name both images",
			args: []string{"--set", "image.registry=registry.example/lb,image.tag=v0.1.0-3-gabcdef0"},
			want: func(t *testing.T, objs objects) {
				setImage(t, objs[ccmDeployment], "registry.example/lb/onprem-cloud-controller-manager:v0.1.0-3-gabcdef0")
				setImage(t, objs[speakerDaemonSet], "registry.example/lb/onprem-speaker:v0.1.0-3-gabcdef0")
			},
		},
		{
			name: "a component's tag wins over image.tag",
			args: []string{"--set", "image.tag=v0.2.0,speaker.image.tag=v0.2.1"},
			want: func(t *testing.T, objs objects) {
				setImage(t, objs[ccmDeployment], "ghcr.io/onprem-lb/onprem-cloud-controller-manager:v0.2.0")
				setImage(t, objs[speakerDaemonSet], "ghcr.io/onprem-lb/onprem-speaker:v0.2.1")
			},
		},
		{
			name: "image.pullPolicy",
			args: []string{"--set", "image.pullPolicy=Always"},
			want: func(t *testing.T, objs objects) {
				set(t, container(t, objs[ccmDeployment]), "Always", "imagePullPolicy")
				set(t, container(t, objs[speakerDaemonSet]), "Always", "imagePullPolicy")
			},
		},
		{
			name: "the pool file's keys",
			args: []string{"--set", "dataplane=iptables,loadBalancerClass=example.com/lan"},
			want: func(t *testing.T, objs objects) {
				set(t, objs[poolConfigMap], "iptables", "data", poolFile, "dataplane")
				set(t, objs[poolConfigMap], "example.com/lan", "data", poolFile, "loadBalancerClass")
			},
		},
		{
			name: "ccm replicas and leader election",
			values: `
ccm:
  replicas: 3
  leaderElection: {leaseDuration: 15s, renewDeadline: 10s, retryPeriod: 2s}
`,
			want: func(t *testing.T, objs objects) {
				set(t, objs[ccmDeployment], 3.0, "spec", "replicas")
				setArg(t, objs[ccmDeployment], "--leader-elect-lease-duration", "15s")
				setArg(t, objs[ccmDeployment], "--leader-elect-renew-deadline", "10s")
				setArg(t, objs[ccmDeployment], "--leader-elect-retry-period", "2s")
			},
		},
		{
			name: "ccm scheduling; lists and maps set to null are removed",
			values: `
ccm:
  nodeSelector: {node-role.kubernetes.io/control-plane: ""}
  affinity: null
  priorityClassName: null
  resources: {requests: {cpu: 100m}}
`,
			want: func(t *testing.T, objs objects) {
				spec := podSpec(t, objs[ccmDeployment])
				spec["nodeSelector"] = map[string]any{"node-role.kubernetes.io/control-plane": ""}
				delete(spec, "affinity")
				delete(spec, "priorityClassName")
				set(t, container(t, objs[ccmDeployment]), "100m", "resources", "requests", "cpu") // memory stays: maps merge
			},
		},
		{
			name: "speaker scheduling and resources",
			values: `
speaker:
  nodeSelector: {kubernetes.io/os: linux}
  tolerations: []
  resources: {limits: {memory: 512Mi}}
`,
			want: func(t *testing.T, objs objects) {
				spec := podSpec(t, objs[speakerDaemonSet])
				spec["nodeSelector"] = map[string]any{"kubernetes.io/os": "linux"}
				delete(spec, "tolerations")
				set(t, container(t, objs[speakerDaemonSet]), "512Mi", "resources", "limits", "memory")
			},
		},
		{
			name: "speaker metrics on every address: the probe stays on loopback",
			args: []string{"--set-string", "speaker.metrics.host="},
			want: func(t *testing.T, objs objects) {
				setArg(t, objs[speakerDaemonSet], "--metrics-bind-address", ":7472")
			},
		},
		{
			name: "speaker metrics on an IPv6 address and another port",
			args: []string{"--set-string", "speaker.metrics.host=2001:db8::7", "--set", "speaker.metrics.port=9472"},
			want: func(t *testing.T, objs objects) {
				c := container(t, objs[speakerDaemonSet])
				setArg(t, objs[speakerDaemonSet], "--metrics-bind-address", "[2001:db8::7]:9472")
				set(t, c, 9472.0, "ports", 0, "containerPort")
				set(t, c, "2001:db8::7", "livenessProbe", "httpGet", "host")
			},
		},
		{
			name: "an existing gossip Secret: none made, that one mounted",
			args: []string{"--set", "speaker.memberlist.existingSecret=my-gossip-key"},
			want: func(t *testing.T, objs objects) {
				delete(objs, memberlistSecret)
				set(t, podSpec(t, objs[speakerDaemonSet]), "my-gossip-key", "volumes", 1, "secret", "secretName")
			},
		},
		{
			name: "namespace.create=false: the namespace is not the chart's",
			args: []string{"--set", "namespace.create=false"},
			want: func(t *testing.T, objs objects) {
				delete(objs, "Namespace onprem-lb")
			},
		},
		{
			name: "namespace.name: every object and every reference moves",
			args: []string{"--set", "namespace.name=lb"},
			want: func(t *testing.T, objs objects) {
				moveNamespace(t, objs, "onprem-lb", "lb")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.values != "" {
				file := filepath.Join(t.TempDir(), "values.yaml")
				if err := os.WriteFile(file, []byte(tt.values), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "-f", file)
			}
			got := render(t, args...)
			maskGossipKey(t, got)
			want := deepCopy(t, base)
			tt.want(t, want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("helm template %s (-want +got):\n%s", strings.Join(args, " "), diff)
			}
		})
	}
}

// TestPoolFilesAreValues: every pool file of examples/ is a values file, and the pods get
// that pool file: it parses to the same config, with no warning.
func TestPoolFilesAreValues(t *testing.T) {
	files, err := filepath.Glob(labtest.RepoPath("examples", "pools-*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples/pools-*.yaml: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			want, err := config.Parse(file, data)
			if err != nil {
				t.Fatal(err)
			}
			rendered, err := yaml.Marshal(get(t, render(t, "-f", file)[poolConfigMap], "data", poolFile))
			if err != nil {
				t.Fatal(err)
			}
			got, err := config.Parse("the chart's pool file", rendered)
			if err != nil {
				t.Fatalf("helm template -f %s: %v", file, err)
			}
			if len(got.Warnings) > 0 || !got.Equal(want) {
				t.Errorf("helm template -f %s: the pool file\n%s\nis not %s (warnings %q)", file, rendered, file, got.Warnings)
			}
		})
	}
}

// TestBadValues: a value of the wrong type or name fails `helm template` with the field.
func TestBadValues(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantField string // in helm's message
	}{
		{name: "testdata/bad-values.yaml: addresses not a list", args: []string{"-f", filepath.Join("testdata", "bad-values.yaml")}, wantField: "/pools/0/addresses"},
		{name: "replicas not a number", args: []string{"--set", "ccm.replicas=two"}, wantField: "/ccm/replicas"},
		{name: "unknown dataplane", args: []string{"--set", "dataplane=ipvs"}, wantField: "/dataplane"},
		{name: "misspelt field", args: []string{"--set", "speaker.metrics.prot=7472"}, wantField: "additional properties 'prot'"},
		{name: "bad duration", args: []string{"--set", "ccm.leaderElection.leaseDuration=5"}, wantField: "/ccm/leaderElection/leaseDuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := helmTemplate(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantField) {
				t.Errorf("helm template %s: error %v, want one naming %s", strings.Join(tt.args, " "), err, tt.wantField)
			}
		})
	}
}
