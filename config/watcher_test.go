package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/google/go-cmp/cmp"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/testutil"
)

// The pool files the watcher tests write.
var (
	docA = "pools:\n- name: a\n  addresses: [198.18.0.0/24]\n"
	docB = "pools:\n- name: b\n  addresses: [198.18.0.0/24]\n"
	docC = "pools:\n- name: c\n  addresses: [198.18.0.0/24]\n"
	// docBad is bad at pools[0].addresses[0].
	docBad = "pools:\n- name: a\n  addresses: [198.18.0.1/24]\n"
)

// waitTimeout bounds every wait for the watcher; reaching it fails the test.
const waitTimeout = 10 * time.Second

// watch is a running Watcher and what it reported.
type watch struct {
	w       *Watcher
	metrics *Metrics
	changes chan *Config
	errs    chan error
}

// startWatcher runs a Watcher of path until the test ends. Its poll interval
// is an hour unless opts set it, so that changes are seen through
// file-system events.
func startWatcher(t *testing.T, path string, opts ...Option) *watch {
	t.Helper()
	reg := metrics.NewKubeRegistry()
	m := NewMetrics()
	m.Register(reg.MustRegister)
	wt := &watch{metrics: m, changes: make(chan *Config, 16), errs: make(chan error, 16)}
	opts = append([]Option{
		WithPollInterval(time.Hour),
		WithMetrics(m),
		OnChange(func(c *Config) { wt.changes <- c }),
		OnError(func(err error) { wt.errs <- err }),
	}, opts...)
	wt.w = NewWatcher(path, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		wt.w.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return after its context was cancelled")
		}
	})
	return wt
}

// change waits for the next OnChange and checks that it is the config of doc.
func (wt *watch) change(t *testing.T, doc string) {
	t.Helper()
	want, err := Parse(wt.w.path, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	wt.changeTo(t, want)
}

// changeTo waits for the next OnChange and checks that it is want.
func (wt *watch) changeTo(t *testing.T, want *Config) {
	t.Helper()
	select {
	case got := <-wt.changes:
		if diff := cmp.Diff(want, got, configCmp); diff != "" {
			t.Fatalf("OnChange (-want +got):\n%s", diff)
		}
		if wt.w.Current() != got {
			t.Errorf("Current() is not the config passed to OnChange")
		}
	case err := <-wt.errs:
		t.Fatalf("OnError(%v), want OnChange", err)
	case <-time.After(waitTimeout):
		t.Fatalf("no OnChange within %s", waitTimeout)
	}
}

// failure waits for the next OnError and returns its error.
func (wt *watch) failure(t *testing.T) *Error {
	t.Helper()
	select {
	case err := <-wt.errs:
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("OnError(%v): not an *Error", err)
		}
		return e
	case c := <-wt.changes:
		t.Fatalf("OnChange(%+v), want OnError", c)
	case <-time.After(waitTimeout):
		t.Fatalf("no OnError within %s", waitTimeout)
	}
	return nil
}

// counted waits until the reload counters reach success and failure and
// the gauge says whether the last read was valid.
func (wt *watch) counted(t *testing.T, success, failure float64, lastOK bool) {
	t.Helper()
	wantGauge := 0.0
	if lastOK {
		wantGauge = 1
	}
	var gotS, gotF, gotGauge float64
	for deadline := time.Now().Add(waitTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		gotS = counterValue(t, wt.metrics, "success")
		gotF = counterValue(t, wt.metrics, "failure")
		var err error
		if gotGauge, err = testutil.GetGaugeMetricValue(wt.metrics.lastSuccess); err != nil {
			t.Fatal(err)
		}
		if gotS == success && gotF == failure && gotGauge == wantGauge {
			return
		}
	}
	t.Fatalf("reloads: success %v, failure %v, last success %v; want %v, %v, %v", gotS, gotF, gotGauge, success, failure, wantGauge)
}

func counterValue(t *testing.T, m *Metrics, result string) float64 {
	t.Helper()
	v, err := testutil.GetCounterMetricValue(m.reloads.WithLabelValues(result))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// writeFile writes a file the way an editor saving in place does.
func writeFile(t *testing.T, path, doc string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pools.yaml")
	writeFile(t, path, docA)
	wt := startWatcher(t, path)
	wt.change(t, docA) // without WithCurrent, the first read is a change
	wt.counted(t, 1, 0, true)

	writeFile(t, path, docB)
	wt.change(t, docB)
	wt.counted(t, 2, 0, true)

	// Replaced by rename, as tools that write atomically do.
	tmp := filepath.Join(filepath.Dir(path), ".pools.yaml.tmp")
	writeFile(t, tmp, docC)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	wt.change(t, docC)
	wt.counted(t, 3, 0, true)
}

// kubeletDir lays out dir as the kubelet does for a ConfigMap volume with
// the key pools.yaml, holding doc, and returns the path of the file.
func kubeletDir(t *testing.T, dir, doc string) string {
	t.Helper()
	kubeletSwap(t, dir, "..2026_01_01_00_00_00.000000001", doc)
	path := filepath.Join(dir, "pools.yaml")
	if err := os.Symlink(filepath.Join("..data", "pools.yaml"), path); err != nil {
		t.Fatal(err)
	}
	return path
}

// kubeletSwap updates the ConfigMap volume in dir the way the kubelet's
// atomic writer does: the new content goes into a new timestamped
// directory, a new ..data symlink to it replaces the old one by rename, and
// the old directory is removed.
func kubeletSwap(t *testing.T, dir, stamp, doc string) {
	t.Helper()
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Mkdir(filepath.Join(dir, stamp), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, stamp, "pools.yaml"), doc)
	if err := os.Symlink(stamp, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWatcherConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	path := kubeletDir(t, dir, docA)
	initial, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	wt := startWatcher(t, path, WithCurrent(initial))
	wt.counted(t, 1, 0, true) // the first read, equal to the current config: no OnChange
	if wt.w.Current() != initial {
		t.Errorf("Current() changed though the file did not")
	}

	kubeletSwap(t, dir, "..2026_01_01_00_01_00.000000002", docB)
	wt.change(t, docB)
	kubeletSwap(t, dir, "..2026_01_01_00_02_00.000000003", docC)
	wt.change(t, docC)
	wt.counted(t, 3, 0, true)
}

func TestWatcherBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pools.yaml")
	writeFile(t, path, docA)
	wt := startWatcher(t, path)
	wt.change(t, docA)
	good := wt.w.Current()

	writeFile(t, path, docBad)
	e := wt.failure(t)
	if e.Source != path || e.Field != "pools[0].addresses[0]" {
		t.Errorf("OnError(%v): want an error on pools[0].addresses[0] of %s", e, path)
	}
	if wt.w.Current() != good {
		t.Errorf("Current() changed after a bad file, want the last good config kept")
	}
	wt.counted(t, 1, 1, false)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if e := wt.failure(t); !errors.Is(e, os.ErrNotExist) || e.Source != path {
		t.Errorf("OnError(%v) for a removed file: want an *Error on %s wrapping os.ErrNotExist", e, path)
	}
	wt.counted(t, 1, 2, false)

	writeFile(t, path, docB)
	wt.change(t, docB)
	wt.counted(t, 2, 2, true)
}

func TestWatcherCommentOnlyChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pools.yaml")
	writeFile(t, path, docA)
	wt := startWatcher(t, path)
	wt.change(t, docA)

	writeFile(t, path, "# the same pools\n"+docA)
	wt.counted(t, 2, 0, true) // read and valid, but not a change
	writeFile(t, path, docB)
	wt.change(t, docB) // the next OnChange is B: the comment made none
}

func TestWatcherPollFallback(t *testing.T) {
	// The watched path is a symlink to a file in another directory: writing
	// that file makes no event in the watched directory, so only the poll
	// sees it.
	target := filepath.Join(t.TempDir(), "real.yaml")
	writeFile(t, target, docA)
	path := filepath.Join(t.TempDir(), "pools.yaml")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	wt := startWatcher(t, path, WithPollInterval(20*time.Millisecond))
	wt.change(t, docA)
	writeFile(t, target, docB)
	wt.change(t, docB)
}

func TestWatcherMissingDirectoryPolls(t *testing.T) {
	// The directory does not exist yet: nothing to watch, so the file is polled until it
	// appears, and Run does not fail.
	dir := filepath.Join(t.TempDir(), "later")
	path := filepath.Join(dir, "pools.yaml")
	wt := startWatcher(t, path, WithPollInterval(20*time.Millisecond))
	if e := wt.failure(t); !errors.Is(e, os.ErrNotExist) || e.Source != path {
		t.Errorf("OnError(%v) for a missing file: want an *Error on %s wrapping os.ErrNotExist", e, path)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, docA)
	wt.change(t, docA)
}

func TestWatcherInotifyUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pools.yaml")
	writeFile(t, path, docA)
	exhausted := errors.New("too many open files")
	wt := startWatcher(t, path, WithPollInterval(20*time.Millisecond),
		withNotifier(func(string) (*fsnotify.Watcher, error) { return nil, exhausted }))
	wt.change(t, docA)
	writeFile(t, path, docB)
	wt.change(t, docB) // seen by the poll alone
	if got, err := testutil.GetCounterMetricValue(wt.metrics.watchFallbacks); err != nil || got != 1 {
		t.Errorf("onprem_lb_config_watch_fallbacks_total = %v (%v), want 1", got, err)
	}
}

func TestWatcherPinsClass(t *testing.T) {
	// The class is fixed at start: a new class in the file is reported as waiting for a
	// restart, the rest of the file applies, and the config handed over keeps the class.
	classA := docA + "loadBalancerClass: example.com/a\n"
	path := filepath.Join(t.TempDir(), "pools.yaml")
	writeFile(t, path, classA)
	initial, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	wt := startWatcher(t, path, WithCurrent(initial))
	wt.counted(t, 1, 0, true)

	writeFile(t, path, docB+"loadBalancerClass: example.com/b\n")
	want, err := Parse(path, []byte(docB+"loadBalancerClass: example.com/a\n"))
	if err != nil {
		t.Fatal(err)
	}
	want.Warnings = []string{`loadBalancerClass: "example.com/b" is ignored until restart; serving "example.com/a"`}
	wt.changeTo(t, want)
	wt.restartPending(t, 1)

	writeFile(t, path, classA)
	wt.change(t, classA)
	wt.restartPending(t, 0)
}

// restartPending checks the onprem_lb_config_restart_pending gauge.
func (wt *watch) restartPending(t *testing.T, want float64) {
	t.Helper()
	if got, err := testutil.GetGaugeMetricValue(wt.metrics.restartPending); err != nil || got != want {
		t.Errorf("onprem_lb_config_restart_pending = %v (%v), want %v", got, err, want)
	}
}

func TestMetricsExposition(t *testing.T) {
	reg := metrics.NewKubeRegistry()
	m := NewMetrics()
	m.Register(reg.MustRegister)
	m.record(true)
	m.record(false)
	m.record(false)
	want := `# HELP onprem_lb_config_last_reload_success [ALPHA] 1 if the last content of the pool file read was valid, 0 if not.
# TYPE onprem_lb_config_last_reload_success gauge
onprem_lb_config_last_reload_success 0
# HELP onprem_lb_config_reloads_total [ALPHA] New contents of the pool file read, by result: success (valid) or failure (invalid or unreadable; the last good config is kept).
# TYPE onprem_lb_config_reloads_total counter
onprem_lb_config_reloads_total{result="failure"} 2
onprem_lb_config_reloads_total{result="success"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "onprem_lb_config_reloads_total", "onprem_lb_config_last_reload_success"); err != nil {
		t.Error(err)
	}
	var none *Metrics
	none.record(true) // nil Metrics count nothing, and do not panic
}

// withNotifier replaces fsnotify, e.g. with one that fails as an exhausted
// inotify does.
func withNotifier(f func(dir string) (*fsnotify.Watcher, error)) Option {
	return func(w *Watcher) { w.notify = f }
}

// WithPollInterval sets how often the file is re-read whatever the events
// say; d <= 0 keeps DefaultPollInterval.
func WithPollInterval(d time.Duration) Option {
	return func(w *Watcher) {
		if d > 0 {
			w.poll = d
		}
	}
}

// Current returns the last good config: the last one passed to OnChange, or
// the one given WithCurrent, or nil. It is safe for concurrent use.
func (w *Watcher) Current() *Config { return w.current.Load() }
