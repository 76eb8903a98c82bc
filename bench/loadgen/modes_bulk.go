// One-stream TCP bulk throughput, both directions, against the upstream's byte protocol:
// 'U' then bytes until half-close, answered with the byte count it received; 'D' and the
// upstream streams bytes until the client closes.
package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

const chunkSize = 64 << 10

// bulkUp sends for the duration, half-closes, and counts the time until the upstream has
// acknowledged every byte: end-to-end, not just into socket buffers.
func bulkUp(d *dialer, duration time.Duration, r *Result) error {
	c, err := d.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	r.TLS = tlsInfo(c)
	buf := make([]byte, chunkSize)
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	w := newWindow(0, duration)
	cpu := meterWindow(w)
	if _, err := c.Write([]byte{'U'}); err != nil {
		return err
	}
	var sent int64
	for !w.over() {
		_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
		n, err := c.Write(buf)
		sent += int64(n)
		if err != nil {
			return err
		}
	}
	if err := c.closeWrite(); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no byte count from the upstream: %w", err)
	}
	elapsed := time.Since(w.start).Seconds()
	got, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil || got != sent {
		return fmt.Errorf("upstream counted %q bytes, sent %d", strings.TrimSpace(line), sent)
	}
	r.Seconds, r.Bytes, r.Count = elapsed, sent, 1
	r.MBps = float64(sent) / (1 << 20) / elapsed
	r.Rate = r.MBps
	r.Ok = 1
	cpu.report(r, duration.Seconds())
	return nil
}

// bulkDown reads what the upstream streams for the duration.
func bulkDown(d *dialer, duration time.Duration, r *Result) error {
	c, err := d.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	r.TLS = tlsInfo(c)
	if _, err := c.Write([]byte{'D'}); err != nil {
		return err
	}
	buf := make([]byte, chunkSize)
	w := newWindow(0, duration)
	cpu := meterWindow(w)
	var got int64
	for !w.over() {
		_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
		n, err := c.Read(buf)
		got += int64(n)
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", got, err)
		}
	}
	elapsed := time.Since(w.start).Seconds()
	r.Seconds, r.Bytes, r.Count = elapsed, got, 1
	r.MBps = float64(got) / (1 << 20) / elapsed
	r.Rate = r.MBps
	r.Ok = 1
	cpu.report(r, duration.Seconds())
	return nil
}

// tcpProbe connects as the denied identity and tries an upload; the upstream's byte count
// coming back means the proxy let it through.
func tcpProbe(addr string, cfg *tls.Config, attempts int) *DenyResult {
	res := newDenyResult()
	d := &dialer{addr: addr, tls: cfg}
	for i := 0; i < attempts; i++ {
		res.Attempts++
		c, err := d.dial()
		if err != nil {
			res.Refused++
			continue
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, werr := c.Write([]byte("Uprobe"))
		if werr == nil {
			werr = c.closeWrite()
		}
		reply, _ := io.ReadAll(io.LimitReader(c, 64))
		c.Close()
		if werr == nil && strings.TrimSpace(string(reply)) == "5" {
			res.Leaked++
		} else {
			res.Refused++
		}
	}
	return res
}
