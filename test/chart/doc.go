// Package chart holds the tests of the Helm chart charts/onprem-lb. They prove that the
// chart's default render is what `kubectl kustomize manifests/` gives (manifests/ and the
// chart are written by hand, side by side; these tests keep them from drifting), that each
// value reaches the objects it names and nothing else, that any pool file of examples/ is a
// values file, and that bad values fail naming the field.
//
// They run helm and kubectl, nothing else: no cluster. `make lab-test` sets
// ONPREM_LB_HELM (test/tools/gotool.sh helm) and ONPREM_LB_TOOLS_BIN (test/tools/build.sh,
// for kubectl).
package chart
