// The upstream every target forwards to, run pinned on the proxy's core: an HTTP/1.1 server with a
// small fixed answer, and a TCP byte sink/source for bulk transfers. It exits by itself after
// maxLife.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

var upstreamResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ok\":true}\n")

var badRequest = []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

func runUpstream(httpAddr, tcpAddr string, maxLife time.Duration) error {
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return err
	}
	tl, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		return err
	}
	go accept(hl, serveHTTP)
	go accept(tl, serveBytes)
	fmt.Printf("ready http=%d tcp=%d\n", hl.Addr().(*net.TCPAddr).Port, tl.Addr().(*net.TCPAddr).Port)
	time.Sleep(maxLife)
	fmt.Fprintln(os.Stderr, "upstream: max life reached, exiting")
	return nil
}

func accept(l net.Listener, serve func(*net.TCPConn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go serve(c.(*net.TCPConn))
	}
}

var (
	hTE      = []byte("transfer-encoding:")
	hCL      = []byte("content-length:")
	http10   = []byte("HTTP/1.0")
	idleTime = 2 * time.Minute
)

// serveHTTP answers every request on a kept-alive connection with the same small JSON body. It
// reads request heads and skips bodies (Content-Length or chunked) and costs a few microseconds a
// request, a fraction of net/http's, so the core it shares with the proxy goes to the proxy.
func serveHTTP(c *net.TCPConn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	for {
		_ = c.SetReadDeadline(time.Now().Add(idleTime))
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		keepAlive := !bytes.Contains(line, http10)
		length := int64(0)
		chunked := false
		for {
			h, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(h) <= 2 {
				break
			}
			switch {
			case hasPrefixFold(h, hCL):
				if length = parseUint(bytes.TrimSpace(h[len(hCL):]), 10); length < 0 {
					_, _ = c.Write(badRequest)
					return
				}
			case hasPrefixFold(h, hTE):
				chunked = containsFold(h[len(hTE):], "chunked")
			case hasPrefixFold(h, hConnection):
				v := h[len(hConnection):]
				if containsFold(v, "close") {
					keepAlive = false
				} else if containsFold(v, "keep-alive") {
					keepAlive = true
				}
			}
		}
		if chunked {
			hc := httpConn{br: br}
			if hc.skipChunked() != nil {
				_, _ = c.Write(badRequest)
				return
			}
		} else if length > 0 {
			if _, err := br.Discard(int(length)); err != nil {
				return
			}
		}
		if _, err := c.Write(upstreamResponse); err != nil || !keepAlive {
			return
		}
	}
}

// maxStream bounds one download even if a client never closes.
const maxStream = 10 * time.Minute

func serveBytes(c *net.TCPConn) {
	defer c.Close()
	op := make([]byte, 1)
	if _, err := io.ReadFull(c, op); err != nil {
		return
	}
	switch op[0] {
	case 'U':
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			return
		}
		_, _ = fmt.Fprintf(c, "%d\n", n)
	case 'D':
		buf := make([]byte, chunkSize)
		for i := range buf {
			buf[i] = byte('a' + i%26)
		}
		deadline := time.Now().Add(maxStream)
		for time.Now().Before(deadline) {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
}
