// The shape every load mode shares: a warm-up, a measured window, per-worker statistics merged
// at the end, the correctness probe with the denied identity, and the generator's own CPU time.
package main

import (
	"strconv"
	"syscall"
	"time"
)

// window is the measured part of a run; samples completing outside it are not counted.
type window struct {
	start, measStart, end time.Time
}

func newWindow(warmup, duration time.Duration) window {
	now := time.Now()
	return window{start: now, measStart: now.Add(warmup), end: now.Add(warmup + duration)}
}

func (w window) in(t time.Time) bool { return !t.Before(w.measStart) && t.Before(w.end) }
func (w window) over() bool          { return !time.Now().Before(w.end) }

// stats belongs to one worker goroutine; merged after all workers are done.
type stats struct {
	lat      hist
	lag      hist
	done     uint64 // completed in the window
	ok       uint64 // 2xx for the allowed identity, whole run
	bad      uint64 // any other status for the allowed identity, whole run
	errors   uint64 // connection or protocol errors, whole run
	resumed  uint64 // resume mode: connections in the window that resumed a TLS session
	statuses map[int]uint64
	tls      *TLSInfo
}

func newStats() *stats { return &stats{statuses: map[int]uint64{}} }

func (s *stats) status(code int) {
	s.statuses[code]++
	if code >= 200 && code < 300 {
		s.ok++
	} else {
		s.bad++
	}
}

func (s *stats) merge(o *stats) {
	s.lat.merge(&o.lat)
	s.lag.merge(&o.lag)
	s.done += o.done
	s.ok += o.ok
	s.bad += o.bad
	s.errors += o.errors
	s.resumed += o.resumed
	for k, v := range o.statuses {
		s.statuses[k] += v
	}
	if s.tls == nil {
		s.tls = o.tls
	}
}

// Result is printed as one JSON object on stdout.
type Result struct {
	Mode       string            `json:"mode"`
	Seconds    float64           `json:"seconds"`
	Conns      int               `json:"conns,omitempty"`
	TargetRate float64           `json:"targetRate,omitempty"`
	Count      uint64            `json:"count"`
	Rate       float64           `json:"rate"`
	Latency    *Latency          `json:"latencyUs,omitempty"`
	TimerLag   *Latency          `json:"timerLagUs,omitempty"`
	Ok         uint64            `json:"ok"`
	Bad        uint64            `json:"bad"`
	Errors     uint64            `json:"errors"`
	Resumed    uint64            `json:"resumed,omitempty"`
	Statuses   map[string]uint64 `json:"statuses,omitempty"`
	Bytes      int64             `json:"bytes,omitempty"`
	MBps       float64           `json:"mbps,omitempty"`
	Deny       *DenyResult       `json:"deny,omitempty"`
	TLS        *TLSInfo          `json:"tls,omitempty"`
	GenCPU     float64           `json:"genCpuSeconds"`
	GenShare   float64           `json:"genCpuShare"`
}

func (r *Result) fill(s *stats) {
	r.Count = s.done
	r.Ok, r.Bad, r.Errors, r.Resumed = s.ok, s.bad, s.errors, s.resumed
	r.TLS = s.tls
	r.Statuses = map[string]uint64{}
	for k, v := range s.statuses {
		r.Statuses[strconv.Itoa(k)] = v
	}
	if s.lat.n > 0 {
		l := s.lat.summary()
		r.Latency = &l
	}
	if s.lag.n > 0 {
		l := s.lag.summary()
		r.TimerLag = &l
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// cpuMeter reads the generator's CPU at the start and end of the measured window.
type cpuMeter struct {
	from, to float64
	done     chan struct{}
}

func meterWindow(w window) *cpuMeter {
	m := &cpuMeter{done: make(chan struct{})}
	go func() {
		time.Sleep(time.Until(w.measStart))
		m.from = cpuSeconds()
		time.Sleep(time.Until(w.end))
		m.to = cpuSeconds()
		close(m.done)
	}()
	return m
}

func (m *cpuMeter) report(r *Result, seconds float64) {
	<-m.done
	r.GenCPU = m.to - m.from
	if seconds > 0 {
		r.GenShare = r.GenCPU / seconds
	}
}
