package config

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

// DefaultPollInterval is how often a Watcher re-reads the file, whatever the
// file-system events say.
const DefaultPollInterval = 2 * time.Second

// settleDelay is how long a Watcher waits after the last file-system event
// before it reads the file, so that a file written in several steps (truncate,
// then write) is read once, whole.
const settleDelay = 100 * time.Millisecond

// Watcher follows a pool file and hands over each new valid config.
//
// It watches the file's directory with fsnotify, which sees a file written
// in place, a file replaced by rename, and the kubelet's update of a mounted
// ConfigMap: the file is a symlink through ..data, and the kubelet points a
// new ..data symlink at a new directory and renames it over the old one.
// After any event in the directory it re-reads the file (following the
// symlinks) and compares a hash of its content with the last one read. In
// case an event is missed (inotify queue overflow, a symlink into another
// directory, a directory replaced under it) it also re-reads the file every
// poll interval, which costs one small read and a SHA-256.
//
// If the directory cannot be watched (inotify unavailable or out of
// instances or watches, the directory missing), the Watcher logs it once,
// counts it in onprem_lb_config_watch_fallbacks_total, and relies on the
// poll alone.
//
// The loadBalancerClass is fixed for the life of the process: the one of the
// config given WithCurrent (or else of the first valid content read). A new
// content with another class is handed over with the running class and a
// warning saying the new one waits for a restart, and
// onprem_lb_config_restart_pending is 1 until the file names the running
// class again. Both binaries thus serve the same Services until they restart.
//
// It does not use viper's WatchConfig, which does the same directory watch
// but cannot be stopped (spf13/viper#1404), exits the process if inotify is
// unavailable, and stops watching for good once the file is removed.
type Watcher struct {
	path     string
	onChange func(*Config)
	onError  func(error)
	metrics  *Metrics
	poll     time.Duration
	current  atomic.Pointer[Config]
	// notify starts watching a directory; fsnotify unless a test injects another.
	notify func(dir string) (*fsnotify.Watcher, error)
	// last identifies the last content read; only Run's goroutine uses it.
	last version
	// class is the loadBalancerClass fixed at start, once pinned is true.
	class  string
	pinned bool
}

// version identifies a content of the file: its hash, or why it could not
// be read.
type version struct {
	sum     [sha256.Size]byte
	readErr string
}

// Option configures a Watcher.
type Option func(*Watcher)

// OnChange sets the function called with each new valid config that is not
// Equal to the current one. Without it, changes are only kept (see Current).
func OnChange(f func(*Config)) Option { return func(w *Watcher) { w.onChange = f } }

// OnError sets the function called with the *Error of each new content of
// the file that is invalid or unreadable; the current config is kept. The
// caller logs it.
func OnError(f func(error)) Option { return func(w *Watcher) { w.onError = f } }

// WithMetrics makes the Watcher count each new content read in m; nil means
// no metrics.
func WithMetrics(m *Metrics) Option { return func(w *Watcher) { w.metrics = m } }

// WithCurrent sets the config the caller runs with, usually from Load: the
// Watcher reports changes relative to it. Without it, the first valid
// content read is a change.
func WithCurrent(c *Config) Option {
	return func(w *Watcher) {
		w.current.Store(c)
		w.class, w.pinned = c.LoadBalancerClass, true
	}
}

// NewWatcher returns a Watcher of the pool file at path. It starts nothing;
// see Run.
func NewWatcher(path string, opts ...Option) *Watcher {
	w := &Watcher{path: path, onChange: func(*Config) {}, onError: func(error) {}, poll: DefaultPollInterval, notify: watchDir}
	for _, o := range opts {
		o(w)
	}
	return w
}

// Run reads the file at once, then again on every change, until ctx is done;
// it calls no function after it has returned. Each new content of the file
// is counted; a valid one that differs from the current config becomes
// current and is passed to OnChange, an invalid one is passed to OnError.
// The functions are called from Run's goroutine, one at a time, and should
// return promptly. Call it once.
func (w *Watcher) Run(ctx context.Context) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw, err := w.notify(filepath.Dir(w.path)); err != nil {
		klog.ErrorS(err, "Cannot watch the pool file's directory; polling the file instead", "file", w.path, "interval", w.poll)
		w.metrics.fallback()
	} else {
		defer fw.Close()
		events, errs = fw.Events, fw.Errors
	}
	poll := time.NewTicker(w.poll)
	defer poll.Stop()
	settle := time.NewTimer(0) // the first read, at once
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			settle.Reset(settleDelay)
		case <-errs:
			// Events were lost (queue overflow): look anyway.
			settle.Reset(settleDelay)
		case <-settle.C:
			w.check()
		case <-poll.C:
			w.check()
		}
	}
}

// watchDir watches dir with fsnotify.
func watchDir(dir string) (*fsnotify.Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("config: watch %s: %w", dir, err)
	}
	if err := fw.Add(dir); err != nil {
		fw.Close()
		return nil, fmt.Errorf("config: watch %s: %w", dir, err)
	}
	return fw, nil
}

// check reads the file and, if its content is new, parses it and reports.
func (w *Watcher) check() {
	data, err := readFile(w.path)
	v := version{sum: sha256.Sum256(data)}
	if err != nil {
		v = version{readErr: err.Error()}
	}
	if v == w.last {
		return
	}
	w.last = v
	var cfg *Config
	if err == nil {
		cfg, err = Parse(w.path, data)
	}
	if err == nil {
		cfg = w.pin(cfg)
	}
	w.metrics.record(err == nil)
	switch {
	case err != nil:
		w.onError(err)
	case !cfg.Equal(w.current.Load()):
		w.current.Store(cfg)
		w.onChange(cfg)
	}
}

// pin returns cfg with the class fixed at start, and a warning if the file
// asks for another; the first valid config fixes the class if WithCurrent did
// not.
func (w *Watcher) pin(cfg *Config) *Config {
	if !w.pinned {
		w.class, w.pinned = cfg.LoadBalancerClass, true
	}
	differs := cfg.LoadBalancerClass != w.class
	w.metrics.setRestartPending(differs)
	if !differs {
		return cfg
	}
	pinned := *cfg
	pinned.LoadBalancerClass = w.class
	pinned.Warnings = append(slices.Clone(cfg.Warnings),
		fmt.Sprintf("loadBalancerClass: %q is ignored until restart; serving %q", cfg.LoadBalancerClass, w.class))
	return &pinned
}

// readFile reads the pool file; the error is an *Error.
func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Source: path, Reason: fmt.Sprintf("cannot read the file: %v", err), Err: err}
	}
	return data, nil
}
