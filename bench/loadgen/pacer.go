// Precise waits for the open loop. Go's timers sleep in epoll with millisecond granularity, so a
// 300 µs wait can take a millisecond, and in an open loop that lateness would be charged to the
// target. A timerfd read through the netpoller wakes within microseconds, on any GOMAXPROCS.
package main

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

type pacer struct {
	f *os.File // nil: fall back to time.Sleep
}

const (
	clockMonotonic = 1
	tfdNonblock    = syscall.O_NONBLOCK
	tfdCloexec     = syscall.O_CLOEXEC
)

type itimerspec struct {
	interval syscall.Timespec
	value    syscall.Timespec
}

func newPacer() *pacer {
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, tfdNonblock|tfdCloexec, 0)
	if errno != 0 {
		return &pacer{}
	}
	return &pacer{f: os.NewFile(fd, "timerfd")}
}

// until returns at t (or at once when t has passed).
func (p *pacer) until(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	if p.f == nil {
		time.Sleep(d)
		return
	}
	spec := itimerspec{value: syscall.NsecToTimespec(int64(d))}
	_, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, p.f.Fd(), 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	if errno != 0 {
		time.Sleep(d)
		return
	}
	var buf [8]byte
	if _, err := p.f.Read(buf[:]); err != nil {
		time.Sleep(time.Until(t))
	}
}

func (p *pacer) close() {
	if p.f != nil {
		p.f.Close()
	}
}
