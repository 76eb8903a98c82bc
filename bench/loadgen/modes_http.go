// The HTTP load modes: closed-loop keep-alive (req/s), open-loop at a fixed rate (latency from
// the intended send time, so a stalled server cannot hide its queue: no coordinated omission),
// and new connections per second (a full TLS handshake and one request each).
package main

import (
	"sync"
	"time"
)

type httpOpts struct {
	dialer   *dialer
	req      []byte
	conns    int
	warmup   time.Duration
	duration time.Duration
	rate     float64 // open loop only
}

// reconnectPause keeps a worker from spinning when the target refuses connections.
const reconnectPause = 5 * time.Millisecond

func (o *httpOpts) connect(s *stats, w window) *httpConn {
	for !w.over() {
		c, err := o.dialer.dial()
		if err == nil {
			if s.tls == nil {
				s.tls = tlsInfo(c)
			}
			return newHTTPConn(c, o.req)
		}
		s.errors++
		time.Sleep(reconnectPause)
	}
	return nil
}

// exchange runs one request on hc (connecting first when needed) and returns the connection to
// keep, the status (0 on error) and the completion time.
func (o *httpOpts) exchange(hc *httpConn, s *stats) (*httpConn, int, time.Time) {
	status, err := hc.roundTrip()
	t := time.Now()
	if err != nil {
		s.errors++
		hc.c.Close()
		return nil, 0, t
	}
	s.status(status)
	if hc.closed {
		hc.c.Close()
		return nil, status, t
	}
	return hc, status, t
}

func runWorkers(n int, w window, work func(i int, s *stats)) *stats {
	all := make([]*stats, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		all[i] = newStats()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			work(i, all[i])
		}(i)
	}
	wg.Wait()
	total := newStats()
	for _, s := range all {
		total.merge(s)
	}
	return total
}

func closedLoop(o *httpOpts, w window) *stats {
	return runWorkers(o.conns, w, func(_ int, s *stats) {
		var hc *httpConn
		for !w.over() {
			if hc == nil {
				if hc = o.connect(s, w); hc == nil {
					return
				}
			}
			t0 := time.Now()
			var status int
			var t1 time.Time
			hc, status, t1 = o.exchange(hc, s)
			if status != 0 && w.in(t1) {
				s.done++
				s.lat.record(t1.Sub(t0))
			}
		}
		if hc != nil {
			hc.c.Close()
		}
	})
}

// openLoop gives each connection its share of the rate, phase-shifted so sends are spread evenly.
// A request whose connection is still busy goes out late, and its latency still counts from
// when it should have been sent. With slowOver > 0, each worker also keeps its slow requests
// (returned per worker, for -slow-log).
func openLoop(o *httpOpts, w window, slowOver time.Duration) (*stats, []*slowLog) {
	period := time.Duration(float64(time.Second) * float64(o.conns) / o.rate)
	logs := make([]*slowLog, o.conns)
	if slowOver > 0 {
		for i := range logs {
			logs[i] = &slowLog{over: slowOver}
		}
	}
	return runWorkers(o.conns, w, func(i int, s *stats) {
		first := w.start.Add(period * time.Duration(i) / time.Duration(o.conns))
		p := newPacer()
		defer p.close()
		var hc *httpConn
		for k := 0; ; k++ {
			intended := first.Add(period * time.Duration(k))
			if !intended.Before(w.end) {
				break
			}
			if time.Until(intended) > 0 {
				p.until(intended)
				if w.in(intended) {
					s.lag.record(time.Since(intended))
				}
			}
			if hc == nil {
				if hc = o.connect(s, w); hc == nil {
					break
				}
			}
			var status int
			var t1 time.Time
			hc, status, t1 = o.exchange(hc, s)
			if status != 0 && w.in(intended) {
				s.done++
				s.lat.record(t1.Sub(intended))
				logs[i].record(i, intended, t1.Sub(intended))
			}
		}
		if hc != nil {
			hc.c.Close()
		}
	}), logs
}

// newConns opens a fresh connection for every request: TCP connect, full TLS 1.3 handshake with
// the client certificate, one request, close. With resume, each worker is a returning client: it
// offers the session ticket of its previous connection (TLS 1.3 PSK resumption, no certificates
// exchanged) and counts how many connections the target let resume.
func newConns(o *httpOpts, w window, resume bool) *stats {
	return runWorkers(o.conns, w, func(_ int, s *stats) {
		d := o.dialer
		if resume {
			d = d.withSessionCache()
		}
		for !w.over() {
			t0 := time.Now()
			c, err := d.dial()
			if err != nil {
				s.errors++
				time.Sleep(reconnectPause)
				continue
			}
			if s.tls == nil {
				s.tls = tlsInfo(c)
			}
			hc := newHTTPConn(c, o.req)
			_, status, t1 := o.exchange(hc, s)
			c.Close() // a second Close after exchange closed it is harmless

			if status != 0 && w.in(t1) {
				s.done++
				s.lat.record(t1.Sub(t0))
				if didResume(c) {
					s.resumed++
				}
			}
		}
	})
}
