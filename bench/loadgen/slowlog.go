// The open loop's slow-request log (-slow-log FILE): every measured request slower than
// -slow-over, with its intended send time on CLOCK_MONOTONIC, the clock `perf record -k
// CLOCK_MONOTONIC` stamps its events with, so a slow request can be laid over what each CPU was
// running at that moment (docs/performance.md, "The open-loop tail").
package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"
	"unsafe"
)

type slowRequest struct {
	intended time.Time
	latency  time.Duration
	conn     int
}

// slowLog belongs to one worker, like its stats; nil when no log was asked for.
type slowLog struct {
	over time.Duration
	reqs []slowRequest
}

func (l *slowLog) record(conn int, intended time.Time, latency time.Duration) {
	if l != nil && latency >= l.over {
		l.reqs = append(l.reqs, slowRequest{intended, latency, conn})
	}
}

// monotonicNow reads CLOCK_MONOTONIC, which Go's time.Time keeps but does not expose.
func monotonicNow() (time.Time, int64) {
	var ts syscall.Timespec
	now := time.Now()
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return now, 0
	}
	return now, ts.Nano()
}

// writeSlowLog writes one line per slow request, in send order: the intended send time in
// seconds on CLOCK_MONOTONIC, the latency in µs, and the connection's index.
func writeSlowLog(path string, logs []*slowLog) error {
	var all []slowRequest
	for _, l := range logs {
		all = append(all, l.reqs...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].intended.Before(all[j].intended) })
	now, mono := monotonicNow()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "# intended_send_monotonic_s latency_us conn")
	for _, r := range all {
		m := mono + int64(r.intended.Sub(now))
		fmt.Fprintf(w, "%d.%09d %d %d\n", m/1e9, m%1e9, r.latency.Microseconds(), r.conn)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
