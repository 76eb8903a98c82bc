// loadgen: the benchmark's load generator and upstream, standard library only, so that on one
// pinned core it is cheaper per request than any proxy it measures. Every mode prints one JSON
// object on stdout (see Result) including the generator's own CPU time.
//
//	loadgen upstream  -http ADDR -tcp ADDR
//	loadgen http      -addr ADDR [-tls ...] -conns N -duration D -warmup D      keep-alive, closed loop
//	loadgen open      -addr ADDR [-tls ...] -conns N -rate R -duration D         fixed rate, open loop
//	                  [-slow-log FILE -slow-over D]                              and its slow requests
//	loadgen conn      -addr ADDR  -tls ...  -conns N -duration D                 new TLS connection per request
//	loadgen resume    -addr ADDR  -tls ...  -conns N -duration D                 same, resuming the previous session
//	loadgen bulk-up   -addr ADDR [-tls ...] -duration D                          one stream, client → upstream
//	loadgen bulk-down -addr ADDR [-tls ...] -duration D                          one stream, upstream → client
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen upstream|http|open|conn|resume|bulk-up|bulk-down [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	addr := fs.String("addr", "", "target host:port")
	useTLS := fs.Bool("tls", false, "TLS 1.3 with a client certificate")
	ca := fs.String("ca", "", "CA bundle (PEM) that the server certificate chains to")
	cert := fs.String("cert", "", "client certificate of the allowed identity (PEM)")
	key := fs.String("key", "", "its private key (PEM)")
	denyCert := fs.String("deny-cert", "", "client certificate of the denied identity: probe it during the run")
	denyKey := fs.String("deny-key", "", "its private key")
	serverName := fs.String("servername", "localhost", "TLS server name")
	conns := fs.Int("conns", 16, "concurrent connections")
	warmup := fs.Duration("warmup", time.Second, "load before the measured window")
	duration := fs.Duration("duration", 5*time.Second, "measured window")
	rate := fs.Float64("rate", 2000, "open loop: requests per second")
	path := fs.String("path", "/api/items", "request path")
	probe := fs.Duration("probe", 100*time.Millisecond, "interval of the denied identity's requests")
	slowLogPath := fs.String("slow-log", "", "open loop: write the requests slower than -slow-over to this file")
	slowOver := fs.Duration("slow-over", 1200*time.Microsecond, "open loop: what -slow-log counts as slow")
	httpAddr := fs.String("http", "127.0.0.1:0", "upstream: HTTP listen address")
	tcpAddr := fs.String("tcp", "127.0.0.1:0", "upstream: TCP listen address")
	maxLife := fs.Duration("max-life", 3*time.Hour, "upstream: exit after this long")
	_ = fs.Parse(os.Args[2:])

	if mode == "upstream" {
		fail(runUpstream(*httpAddr, *tcpAddr, *maxLife))
		return
	}
	if *addr == "" {
		fail(fmt.Errorf("-addr is required"))
	}
	if *duration <= 0 || *duration > 10*time.Minute || *warmup < 0 || *warmup > time.Minute {
		fail(fmt.Errorf("-duration must be in (0, 10m] and -warmup in [0, 1m]"))
	}
	if *slowLogPath != "" && (mode != "open" || *slowOver <= 0) {
		fail(fmt.Errorf("-slow-log is for the open mode, with a -slow-over above 0"))
	}
	if *conns < 1 || *conns > 1024 {
		fail(fmt.Errorf("-conns must be in [1, 1024]"))
	}
	d := &dialer{addr: *addr}
	var denyTLS *tls.Config
	if *useTLS {
		var err error
		d.tls, err = loadTLS(*ca, *cert, *key, *serverName)
		fail(err)
		if *denyCert != "" {
			denyTLS, err = loadTLS(*ca, *denyCert, *denyKey, *serverName)
			fail(err)
		}
	}
	r := &Result{Mode: mode}
	switch mode {
	case "http", "open", "conn", "resume":
		if (mode == "conn" || mode == "resume") && !*useTLS {
			fail(fmt.Errorf("%s measures TLS handshakes: -tls is required", mode))
		}
		if mode == "open" && (*rate <= 0 || *rate > 1e6) {
			fail(fmt.Errorf("-rate must be in (0, 1e6]"))
		}
		o := &httpOpts{dialer: d, req: buildRequest(*path, *serverName), conns: *conns, warmup: *warmup, duration: *duration, rate: *rate}
		w := newWindow(*warmup, *duration)
		cpu := meterWindow(w)
		var probeWG sync.WaitGroup
		if denyTLS != nil && *probe > 0 {
			r.Deny = httpProbe(*addr, denyTLS, o.req, *probe, w, &probeWG)
		}
		var s *stats
		switch mode {
		case "http":
			s = closedLoop(o, w)
		case "open":
			over := time.Duration(0)
			if *slowLogPath != "" {
				over = *slowOver
			}
			var logs []*slowLog
			s, logs = openLoop(o, w, over)
			r.TargetRate = *rate
			if *slowLogPath != "" {
				fail(writeSlowLog(*slowLogPath, logs))
			}
		default:
			s = newConns(o, w, mode == "resume")
		}
		probeWG.Wait()
		r.Conns = *conns
		r.Seconds = duration.Seconds()
		r.fill(s)
		r.Rate = float64(r.Count) / r.Seconds
		cpu.report(r, r.Seconds)
	case "bulk-up", "bulk-down":
		if denyTLS != nil {
			r.Deny = tcpProbe(*addr, denyTLS, 3)
		}
		if mode == "bulk-up" {
			fail(bulkUp(d, *duration, r))
		} else {
			fail(bulkDown(d, *duration, r))
		}
	default:
		fail(fmt.Errorf("unknown mode %q", mode))
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
