// The correctness probe: while the allowed identity loads the target, a second client presents
// the denied identity's certificate and must never be served.
package main

import (
	"crypto/tls"
	"sync"
	"time"
)

// DenyResult counts what the denied identity got: a deny status, a refused or closed
// connection, or (a failure) a 2xx.
type DenyResult struct {
	Attempts uint64         `json:"attempts"`
	Denied   uint64         `json:"denied"`
	Refused  uint64         `json:"refused"`
	Leaked   uint64         `json:"leaked"`
	Statuses map[int]uint64 `json:"statuses"`
}

func newDenyResult() *DenyResult { return &DenyResult{Statuses: map[int]uint64{}} }

// httpProbe sends one request every interval with the denied identity until the window ends.
func httpProbe(addr string, cfg *tls.Config, req []byte, interval time.Duration, w window, wg *sync.WaitGroup) *DenyResult {
	res := newDenyResult()
	d := &dialer{addr: addr, tls: cfg}
	wg.Add(1)
	go func() {
		defer wg.Done()
		var hc *httpConn
		for next := time.Now(); next.Before(w.end); next = next.Add(interval) {
			time.Sleep(time.Until(next))
			res.Attempts++
			if hc == nil {
				c, err := d.dial()
				if err != nil {
					res.Refused++
					continue
				}
				hc = newHTTPConn(c, req)
			}
			status, err := hc.roundTrip()
			switch {
			case err != nil:
				res.Refused++
			case status >= 200 && status < 300:
				res.Leaked++
			default:
				res.Denied++
			}
			if err == nil {
				res.Statuses[status]++
			}
			if err != nil || hc.closed {
				hc.c.Close()
				hc = nil
			}
		}
		if hc != nil {
			hc.c.Close()
		}
	}()
	return res
}
