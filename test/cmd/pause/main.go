// Command pause is the lab's sandbox ("pause") image: the first process of every pod, which
// holds the pod's namespaces while its containers come and go. It does nothing until SIGTERM
// or SIGINT, then exits 0; as PID 1 of a pod's PID namespace it reaps every orphan that is
// handed to it, so that no zombie outlives its container. It is static and needs no file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	waitStop(signals, reap)
}

// waitStop returns the first SIGTERM or SIGINT from signals, calling reap on each SIGCHLD
// before it.
func waitStop(signals <-chan os.Signal, reap func()) os.Signal {
	for s := range signals {
		if s != syscall.SIGCHLD {
			return s
		}
		reap()
	}
	return nil
}

// reap collects every child that has ended, without blocking.
func reap() {
	for {
		pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
