package main

import (
	"math"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// codeNames are the canonical gRPC status names, as the server's metrics
// label them (grpc-go's String() spells them in CamelCase).
var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return c.String()
}

// Latency is a summary of call durations in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func summarize(ms []float64) Latency {
	if len(ms) == 0 {
		return Latency{}
	}
	sort.Float64s(ms)
	at := func(p float64) float64 {
		i := int(math.Floor(p / 100 * float64(len(ms))))
		if i >= len(ms) {
			i = len(ms) - 1
		}
		return round3(ms[i])
	}
	return Latency{Count: len(ms), P50: at(50), P90: at(90), P99: at(99), Max: round3(ms[len(ms)-1])}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// Phase is what one phase of the run measured. Calls are counted when they
// finish; a phase waits for the calls it started (each bounded by the
// per-call deadline), so none is lost at its end.
type Phase struct {
	Seconds float64 `json:"seconds"`
	// Calls started (offered) and the outcome of each, by status code.
	Calls int            `json:"calls"`
	OK    int            `json:"ok"`
	Codes map[string]int `json:"codes"`
	// OK calls per second of the phase.
	OKPerSecond float64 `json:"ok_per_s"`
	// Every finished call per second, whatever its outcome.
	CallsPerSecond float64            `json:"calls_per_s"`
	LatencyOK      Latency            `json:"latency_ok_ms"`
	LatencyFailed  Latency            `json:"latency_failed_ms"`
	FailedByCode   map[string]Latency `json:"latency_failed_by_code_ms"`
	// Calls whose answer carried grpc-retry-pushback-ms, and its values.
	Pushback   int     `json:"pushback"`
	PushbackMs Latency `json:"pushback_ms"`
	// Distinct agents with at least one OK call in this phase.
	AgentsServed int `json:"agents_served"`
	// Connect-style phases: how long until every agent had an OK call, and
	// the agents that had none before giving up.
	AllServedSeconds *float64 `json:"all_served_s,omitempty"`
	AgentServedMs    *Latency `json:"agent_served_ms,omitempty"`
	FailedForGood    *int     `json:"failed_for_good,omitempty"`
	LastServedUnixMs *int64   `json:"last_served_unix_ms,omitempty"`
	StartUnixMs      int64    `json:"start_unix_ms"`
	// Per second of the phase (by when calls ended): OK calls and their p99
	// in ms, to tell a uniform tail from bursts (a checkpoint, a scan).
	PerSecond []Second `json:"per_second"`
}

type Second struct {
	OK  int     `json:"ok"`
	P99 float64 `json:"p99"`
}

// servedEver: the agents with at least one OK call in any phase.
var servedEver = &agentSet{m: map[int]bool{}}

type agentSet struct {
	mu sync.Mutex
	m  map[int]bool
}

func (s *agentSet) add(i int) {
	s.mu.Lock()
	s.m[i] = true
	s.mu.Unlock()
}

func (s *agentSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

type collector struct {
	mu        sync.Mutex
	start     time.Time
	calls     int
	ok        int
	codes     map[string]int
	okMs      []float64
	failedMs  map[string][]float64
	pushback  []float64
	served    map[int]bool
	servedAt  map[int]time.Duration
	lastServe time.Time
	// OK latencies by the second of the phase they ended in.
	okBySecond [][]float64
}

func newCollector() *collector {
	return &collector{
		start:    time.Now(),
		codes:    map[string]int{},
		failedMs: map[string][]float64{},
		served:   map[int]bool{},
		servedAt: map[int]time.Duration{},
	}
}

func (c *collector) started() {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
}

func (c *collector) record(r result, agent int) {
	ms := float64(r.latency) / float64(time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	name := codeName(r.code)
	c.codes[name]++
	if r.code == codes.OK {
		c.ok++
		c.okMs = append(c.okMs, ms)
		if sec := int(r.end.Sub(c.start) / time.Second); sec >= 0 && sec < 3600 {
			for len(c.okBySecond) <= sec {
				c.okBySecond = append(c.okBySecond, nil)
			}
			c.okBySecond[sec] = append(c.okBySecond[sec], ms)
		}
		c.served[agent] = true
		servedEver.add(agent)
	} else {
		c.failedMs[name] = append(c.failedMs[name], ms)
	}
	if r.pushback >= 0 {
		c.pushback = append(c.pushback, float64(r.pushback))
	}
}

// firstServed notes the moment an agent's first OK call of this phase ended.
func (c *collector) firstServed(agent int, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.servedAt[agent]; !ok {
		c.servedAt[agent] = at.Sub(c.start)
		if at.After(c.lastServe) {
			c.lastServe = at
		}
	}
}

func (c *collector) phase(seconds float64) *Phase {
	c.mu.Lock()
	defer c.mu.Unlock()
	var failed []float64
	byCode := map[string]Latency{}
	for code, ms := range c.failedMs {
		failed = append(failed, ms...)
		byCode[code] = summarize(append([]float64(nil), ms...))
	}
	finished := c.ok + len(failed)
	p := &Phase{
		Seconds:       round3(seconds),
		Calls:         c.calls,
		OK:            c.ok,
		Codes:         c.codes,
		LatencyOK:     summarize(c.okMs),
		LatencyFailed: summarize(failed),
		FailedByCode:  byCode,
		Pushback:      len(c.pushback),
		PushbackMs:    summarize(c.pushback),
		AgentsServed:  len(c.served),
		StartUnixMs:   c.start.UnixMilli(),
	}
	for _, ms := range c.okBySecond {
		l := summarize(append([]float64(nil), ms...))
		p.PerSecond = append(p.PerSecond, Second{OK: l.Count, P99: l.P99})
	}
	if seconds > 0 {
		p.OKPerSecond = round3(float64(c.ok) / seconds)
		p.CallsPerSecond = round3(float64(finished) / seconds)
	}
	return p
}

// withServed adds the connect-style figures for n agents.
func (c *collector) withServed(p *Phase, n int) *Phase {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ms []float64
	for _, d := range c.servedAt {
		ms = append(ms, float64(d)/float64(time.Millisecond))
	}
	l := summarize(ms)
	p.AgentServedMs = &l
	failed := n - len(c.servedAt)
	p.FailedForGood = &failed
	if failed == 0 && len(ms) > 0 {
		s := round3(l.Max / 1000)
		p.AllServedSeconds = &s
	}
	if !c.lastServe.IsZero() {
		t := c.lastServe.UnixMilli()
		p.LastServedUnixMs = &t
	}
	return p
}
