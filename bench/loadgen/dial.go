// Connections to a target: plain TCP for the direct baseline, or TLS 1.3 with a client
// certificate. No session cache, so every TLS connection is a full handshake, except in the
// resume mode, where each worker keeps the last session ticket it got (withSessionCache).
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"
)

type dialer struct {
	addr string
	tls  *tls.Config // nil: plain TCP
}

// conn is a dialed connection; raw is the TCP socket under a TLS one, for half-close.
type conn struct {
	net.Conn
	raw *net.TCPConn
}

func loadTLS(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	caPem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPem) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates:           []tls.Certificate{cert},
		RootCAs:                pool,
		ServerName:             serverName,
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
	}, nil
}

const ioTimeout = 10 * time.Second

// withSessionCache is a dialer of its own for one worker of the resume mode: session tickets on,
// and a cache holding the one session this client last got, so its next connection offers it.
func (d *dialer) withSessionCache() *dialer {
	cfg := d.tls.Clone()
	cfg.SessionTicketsDisabled = false
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	return &dialer{addr: d.addr, tls: cfg}
}

func didResume(c *conn) bool {
	tc, ok := c.Conn.(*tls.Conn)
	return ok && tc.ConnectionState().DidResume
}

func (d *dialer) dial() (*conn, error) {
	c, err := net.DialTimeout("tcp", d.addr, ioTimeout)
	if err != nil {
		return nil, err
	}
	raw := c.(*net.TCPConn)
	if d.tls == nil {
		return &conn{Conn: c, raw: raw}, nil
	}
	tc := tls.Client(c, d.tls)
	_ = tc.SetDeadline(time.Now().Add(ioTimeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return &conn{Conn: tc, raw: raw}, nil
}

// closeWrite sends TLS close_notify (when TLS) and a TCP FIN, keeping the read side open.
func (c *conn) closeWrite() error {
	if tc, ok := c.Conn.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
	}
	return c.raw.CloseWrite()
}

// TLSInfo names what was negotiated, so the report shows every target ran the same suite.
type TLSInfo struct {
	Version string `json:"version"`
	Cipher  string `json:"cipher"`
}

func tlsInfo(c *conn) *TLSInfo {
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	v := "TLS 1.3"
	if st.Version != tls.VersionTLS13 {
		v = fmt.Sprintf("0x%04x", st.Version)
	}
	return &TLSInfo{Version: v, Cipher: tls.CipherSuiteName(st.CipherSuite)}
}
