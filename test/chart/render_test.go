package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// Environment variables naming the tools; `make lab-test` sets both.
const (
	envHelm     = "ONPREM_LB_HELM"      // the helm binary, from test/tools/gotool.sh helm
	envToolsBin = "ONPREM_LB_TOOLS_BIN" // the lab binaries' directory (kubectl), from test/tools/build.sh
)

// kubeVersion is the Kubernetes the chart is rendered for: the oldest it supports (Chart.yaml
// kubeVersion), as `make chart` does.
const kubeVersion = "1.30.0"

// poolConfigMap is the key of the ConfigMap holding the pool file, and poolFile its file.
const (
	poolConfigMap = "ConfigMap onprem-lb/onprem-lb-pools"
	poolFile      = "pools.yaml"
)

// objects are rendered Kubernetes objects, decoded from YAML (numbers are float64), by
// key: "Kind namespace/name", or "Kind name" for cluster-scoped objects.
type objects map[string]map[string]any

// tool returns the path of a tool from the environment, or fails the test saying how to
// get it.
func tool(t *testing.T, env, name, how string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		t.Fatalf("%s is not set: it names %s; run the test with `make lab-test`, or set %s=%s", env, name, env, how)
	}
	return v
}

func helmBin(t *testing.T) string {
	return tool(t, envHelm, "the helm binary", "$(test/tools/gotool.sh helm)")
}

func kubectlBin(t *testing.T) string {
	return filepath.Join(tool(t, envToolsBin, "the lab binaries' directory (kubectl)", "$(test/tools/build.sh)"), "kubectl")
}

// helmTemplate renders the chart as release onprem-lb with extra helm template arguments
// (--set, -f). The error holds helm's stderr.
func helmTemplate(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), append([]string{"template", "--kube-version", kubeVersion, "onprem-lb", labtest.RepoPath("charts", "onprem-lb")}, args...)...)
	// No helm state outside the test: it reads and writes nothing under $HOME.
	dir := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+dir, "HELM_CONFIG_HOME="+dir, "HELM_DATA_HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// render renders the chart with args and decodes the objects, failing the test on error.
func render(t *testing.T, args ...string) objects {
	t.Helper()
	out, err := helmTemplate(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

// kustomize renders a kustomization directory of the repository with kubectl kustomize.
func kustomize(t *testing.T, dir ...string) objects {
	t.Helper()
	path := labtest.RepoPath(dir...)
	out, err := exec.Command(kubectlBin(t), "kustomize", path).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w: %s", err, exit.Stderr)
		}
		t.Fatalf("kubectl kustomize %s: %v", path, err)
	}
	return decode(t, out)
}

// decode splits a YAML stream into objects. The pool file in the pool ConfigMap is decoded
// too: the chart writes it with toYaml, manifests/ keep the comments of the file, and what
// must agree is its content. Two objects with one key, or an object without kind or name,
// fail the test.
func decode(t *testing.T, stream []byte) objects {
	t.Helper()
	objs := objects{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the rendered YAML: %v", err)
		}
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("decoding a rendered object: %v\n%s", err, doc)
		}
		if obj == nil { // only comments
			continue
		}
		k := key(obj)
		if _, dup := objs[k]; dup {
			t.Fatalf("%s rendered twice", k)
		}
		objs[k] = obj
	}
	for k, cm := range named(objs, poolConfigMap) {
		file, _ := get(t, cm, "data", poolFile).(string)
		var pools any
		if err := yaml.Unmarshal([]byte(file), &pools); err != nil {
			t.Fatalf("%s: %s: %v", k, poolFile, err)
		}
		set(t, cm, pools, "data", poolFile)
	}
	return objs
}

// named returns the objects of objs with the kind and name of key, in any namespace.
func named(objs objects, key string) objects {
	out := objects{}
	kind, name, _ := strings.Cut(key, " ")
	name = name[strings.LastIndex(name, "/")+1:]
	for k, obj := range objs {
		meta, _ := obj["metadata"].(map[string]any)
		if obj["kind"] == kind && meta["name"] == name {
			out[k] = obj
		}
	}
	return out
}

// key names an object: "Kind namespace/name", or "Kind name" without a namespace.
func key(obj map[string]any) string {
	meta, _ := obj["metadata"].(map[string]any)
	kind, _ := obj["kind"].(string)
	name, _ := meta["name"].(string)
	if ns, _ := meta["namespace"].(string); ns != "" {
		name = ns + "/" + name
	}
	return kind + " " + name
}

// walk returns the container of the last path element (map keys are strings, slice
// indexes ints), failing the test when a step is missing.
func walk(t *testing.T, v any, path []any) any {
	t.Helper()
	for i, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok || m[p] == nil {
				t.Fatalf("no field %v", path[:i+1])
			}
			v = m[p]
		case int:
			s, ok := v.([]any)
			if !ok || p >= len(s) {
				t.Fatalf("no item %v", path[:i+1])
			}
			v = s[p]
		}
	}
	return v
}

// get returns the value at path in v.
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	return walk(t, v, path)
}

// set sets the value at path in v. Everything on the way must exist, and so must the item
// a last int names; a last string may name a new field.
func set(t *testing.T, v any, value any, path ...any) {
	t.Helper()
	parent := walk(t, v, path[:len(path)-1])
	switch p := path[len(path)-1].(type) {
	case string:
		m, ok := parent.(map[string]any)
		if !ok {
			t.Fatalf("%v is not an object", path[:len(path)-1])
		}
		m[p] = value
	case int:
		s, ok := parent.([]any)
		if !ok || p >= len(s) {
			t.Fatalf("no item %v", path)
		}
		s[p] = value
	}
}

// without returns objs without the objects of keys; each must be there.
func without(t *testing.T, objs objects, keys ...string) objects {
	t.Helper()
	out := objects{}
	for k, o := range objs {
		out[k] = o
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			t.Fatalf("no object %s", k)
		}
		delete(out, k)
	}
	return out
}
