package chart

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
)

// admissionPolicy is the key of the speaker's ValidatingAdmissionPolicy.
const admissionPolicy = "ValidatingAdmissionPolicy onprem-lb-speaker-conditions-only"

// deepCopy returns a copy of objs that shares nothing with it.
func deepCopy(t *testing.T, objs objects) objects {
	t.Helper()
	data, err := json.Marshal(objs)
	if err != nil {
		t.Fatal(err)
	}
	var out objects
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// maskGossipKey checks the random key of the gossip Secret, if objs have it (in any
// namespace), and replaces it with a fixed text, so that two renders compare equal.
func maskGossipKey(t *testing.T, objs objects) {
	t.Helper()
	for _, s := range named(objs, memberlistSecret) {
		gossipKey(t, s)
		set(t, s, "(random)", "data", "key")
	}
}

// podSpec returns the pod template's spec of a Deployment or DaemonSet.
func podSpec(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	return get(t, obj, "spec", "template", "spec").(map[string]any)
}

// container returns the first container of a Deployment or DaemonSet.
func container(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	return get(t, podSpec(t, obj), "containers", 0).(map[string]any)
}

func setImage(t *testing.T, obj map[string]any, image string) {
	t.Helper()
	set(t, container(t, obj), image, "image")
}

// setArg sets the value of the flag (e.g. "--secure-port") among the first container's args,
// where it must be.
func setArg(t *testing.T, obj map[string]any, flag, value string) {
	t.Helper()
	args := get(t, container(t, obj), "args").([]any)
	for i, a := range args {
		if strings.HasPrefix(a.(string), flag+"=") {
			args[i] = flag + "=" + value
			return
		}
	}
	t.Fatalf("%s: no arg %s in %v", key(obj), flag, args)
}

// moveNamespace changes objs as moving onprem-lb from namespace from to namespace to must:
// the objects in it, the Namespace, and every reference to it.
func moveNamespace(t *testing.T, objs objects, from, to string) {
	t.Helper()
	setArg(t, objs[ccmDeployment], "--leader-elect-resource-namespace", to)
	set(t, objs[admissionPolicy], fmt.Sprintf(`request.userInfo.username == "system:serviceaccount:%s:onprem-speaker"`, to),
		"spec", "matchConditions", 0, "expression")
	set(t, objs["Namespace "+from], to, "metadata", "name")
	moved := objects{}
	for k, obj := range objs {
		meta := get(t, obj, "metadata").(map[string]any)
		if meta["namespace"] == from {
			meta["namespace"] = to
		}
		subjects, _ := obj["subjects"].([]any)
		for _, s := range subjects {
			if s := s.(map[string]any); s["namespace"] == from {
				s["namespace"] = to
			}
		}
		moved[key(obj)] = obj
		delete(objs, k)
	}
	maps.Copy(objs, moved)
}
