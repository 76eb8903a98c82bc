// A log-linear latency histogram in microseconds (HdrHistogram-style, about 1.6% precision):
// fixed size, no allocation per sample, mergeable across goroutines.
package main

import (
	"math/bits"
	"time"
)

const (
	subBits    = 6
	subCount   = 1 << subBits // sub-buckets per power of two
	linearTop  = 2 * subCount // values below this are stored exactly
	maxBuckets = linearTop + 40*subCount
)

type hist struct {
	counts [maxBuckets]uint64
	n      uint64
	sum    uint64
	max    uint64
}

func bucketOf(us uint64) int {
	if us < linearTop {
		return int(us)
	}
	e := bits.Len64(us) - (subBits + 1)
	i := linearTop + (e-1)*subCount + int(us>>uint(e)) - subCount
	if i >= maxBuckets {
		return maxBuckets - 1
	}
	return i
}

// valueOf is the midpoint of a bucket.
func valueOf(i int) uint64 {
	if i < linearTop {
		return uint64(i)
	}
	e := (i-linearTop)/subCount + 1
	m := uint64((i-linearTop)%subCount + subCount)
	return m<<uint(e) + (uint64(1)<<uint(e))/2
}

func (h *hist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	us := uint64(d / time.Microsecond)
	h.counts[bucketOf(us)]++
	h.n++
	h.sum += us
	if us > h.max {
		h.max = us
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if rank >= h.n {
		rank = h.n - 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			v := valueOf(i)
			if v > h.max {
				v = h.max
			}
			return float64(v)
		}
	}
	return float64(h.max)
}

// Latency is the summary printed in results, in microseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

func (h *hist) summary() Latency {
	l := Latency{Count: h.n, Max: float64(h.max)}
	if h.n > 0 {
		l.Mean = float64(h.sum) / float64(h.n)
		l.P50 = h.quantile(0.50)
		l.P90 = h.quantile(0.90)
		l.P99 = h.quantile(0.99)
		l.P999 = h.quantile(0.999)
	}
	return l
}
