// A minimal HTTP/1.1 client for one keep-alive connection: writes a fixed request, reads the
// status and skips the body (Content-Length or chunked) without allocating per response.
// net/http would cost the generator several times more CPU per request.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"time"
)

type httpConn struct {
	c      *conn
	br     *bufio.Reader
	req    []byte
	closed bool // the server said Connection: close
}

func newHTTPConn(c *conn, req []byte) *httpConn {
	return &httpConn{c: c, br: bufio.NewReaderSize(c, 16<<10), req: req}
}

func buildRequest(path, host string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: portlicense-loadgen\r\n\r\n")
}

var errBadResponse = errors.New("malformed HTTP response")

var (
	hContentLength    = []byte("content-length:")
	hTransferEncoding = []byte("transfer-encoding:")
	hConnection       = []byte("connection:")
)

// hasPrefixFold reports whether line starts with the lower-case prefix p, ignoring ASCII case.
func hasPrefixFold(line, p []byte) bool {
	if len(line) < len(p) {
		return false
	}
	for i, b := range p {
		c := line[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != b {
			return false
		}
	}
	return true
}

func containsFold(v []byte, word string) bool {
	return bytes.Contains(bytes.ToLower(v), []byte(word))
}

// roundTrip sends the request and returns the response status.
func (h *httpConn) roundTrip() (int, error) {
	_ = h.c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := h.c.Write(h.req); err != nil {
		return 0, err
	}
	line, err := h.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, errBadResponse
	}
	status := int(parseUint(line[9:12], 10))
	if status < 100 {
		return 0, errBadResponse
	}
	length := int64(-1)
	chunked := false
	for {
		line, err = h.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		switch {
		case hasPrefixFold(line, hContentLength):
			n := parseUint(bytes.TrimSpace(line[len(hContentLength):]), 10)
			if n < 0 {
				return 0, errBadResponse
			}
			length = n
		case hasPrefixFold(line, hTransferEncoding):
			chunked = containsFold(line[len(hTransferEncoding):], "chunked")
		case hasPrefixFold(line, hConnection):
			if containsFold(line[len(hConnection):], "close") {
				h.closed = true
			}
		}
	}
	switch {
	case chunked:
		err = h.skipChunked()
	case length >= 0:
		_, err = h.br.Discard(int(length))
	case status == 204 || status == 304 || status < 200:
	default:
		// No length: the body runs to the end of the connection.
		h.closed = true
		_, err = h.br.WriteTo(discard{})
	}
	return status, err
}

func (h *httpConn) skipChunked() error {
	for {
		line, err := h.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		s := bytes.TrimSpace(line)
		if i := bytes.IndexByte(s, ';'); i >= 0 {
			s = s[:i]
		}
		n := parseUint(s, 16)
		if n < 0 {
			return errBadResponse
		}
		if n == 0 {
			for { // trailers up to the empty line
				line, err = h.br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(line) <= 2 {
					return nil
				}
			}
		}
		if _, err := h.br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}

// parseUint parses a non-empty run of digits in base 10 or 16; -1 when invalid or too long.
func parseUint(b []byte, base int64) int64 {
	if len(b) == 0 || len(b) > 15 {
		return -1
	}
	var n int64
	for _, c := range b {
		var d int64
		switch {
		case '0' <= c && c <= '9':
			d = int64(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = int64(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = int64(c-'A') + 10
		default:
			return -1
		}
		n = n*base + d
	}
	return n
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
