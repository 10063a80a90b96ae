// loadgen: a fleet of simulated agents heartbeating to a bmaas server, for the
// heartbeat benchmark (test/bench/heartbeat-bench.ts). Each agent is built the
// way the Go agents in the field are (grpc-go over crypto/tls, its own Ed25519
// key and ephemeral self-signed certificate from their template, its own
// persistent connection), and sends HeartbeatRequest{machine_id}, hand-encoded.
//
// Usage:
//
//	loadgen -addr 127.0.0.1:PORT -agents FILE -mode MODE [flags]
//
// FILE has one agent a line: "MACHINE_ID SEED_HEX" (32-byte Ed25519 seed).
// Every mode first connects the agents (at most -dial-concurrency at a time):
// each retries its first heartbeat with the agents' backoff (0.5 s ×1.5, ±20%)
// until OK or -giveup; that phase reports the time until every agent was
// served and the agents that never were. Then:
//
//	connect  nothing more.
//	b2b      every agent sends its next heartbeat as soon as the last one
//	         was answered, for -duration.
//	open     open loop: the fleet offers -rate heartbeats/s in total, each
//	         agent on its own period (agents/rate) with a random phase, not
//	         waiting for answers and not honouring pushback, for -duration.
//
// With -sliced, b2b and open run in slices told on stdin instead of for
// -duration: "go" starts a slice, "pause" ends it (calls in flight finish,
// none starts), "end" ends the phase. Each slice's OK calls that ended after
// its first -slice-warmup and before "pause" are printed as
// {"event":"slice","ok":N,"seconds":S} on stderr; the phase's seconds are the
// slices' counted time. Two of these, against two servers, take turns: a
// paired comparison in which the machine's drift weighs on both alike.
//
// After that phase it prints {"event":"run-done"} on stderr. With -reconnect it
// then waits for a line on stdin (the server has been restarted meanwhile); then
// every agent heartbeats again, with the agents' backoff, until it is served:
// the "reconnect" phase. Progress events are JSON lines on stderr; the result
// is one JSON object on stdout. Loopback addresses only; the run is bounded by
// -max-runtime whatever happens.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

type Output struct {
	Mode             string  `json:"mode"`
	Address          string  `json:"address"`
	Agents           int     `json:"agents"`
	Rate             float64 `json:"rate,omitempty"`
	DeadlineMs       int64   `json:"deadline_ms"`
	PrepareSeconds   float64 `json:"prepare_s"`
	Connect          *Phase  `json:"connect"`
	Run              *Phase  `json:"run,omitempty"`
	Reconnect        *Phase  `json:"reconnect,omitempty"`
	AgentsServedEver int     `json:"agents_served_ever"`
	PushbackTotal    int     `json:"pushback_total"`
}

func event(name string, fields map[string]interface{}) {
	m := map[string]interface{}{"event": name, "unix_ms": time.Now().UnixMilli()}
	for k, v := range fields {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	fmt.Fprintln(os.Stderr, string(b))
}

func fatal(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(2)
}

// loopbackOnly refuses any target that is not this machine's loopback.
func loopbackOnly(address string) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		fatal("bad -addr %q: %v", address, err)
	}
	if host == "localhost" {
		return
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		fatal("-addr %q: only loopback targets are allowed", address)
	}
}

func readAgents(file string, n int, cfg *config) []*agent {
	data, err := os.ReadFile(file)
	if err != nil {
		fatal("%v", err)
	}
	type line struct {
		id   string
		seed []byte
	}
	var lines []line
	for i, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			fatal("%s:%d: want MACHINE_ID SEED_HEX", file, i+1)
		}
		seed, err := hex.DecodeString(f[1])
		if err != nil || len(seed) != 32 {
			fatal("%s:%d: bad seed", file, i+1)
		}
		lines = append(lines, line{f[0], seed})
		if n > 0 && len(lines) == n {
			break
		}
	}
	if n > 0 && len(lines) < n {
		fatal("%s has %d agents, %d wanted", file, len(lines), n)
	}
	agents := make([]*agent, len(lines))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(lines); i += workers {
				a, err := newAgent(i, lines[i].id, lines[i].seed, cfg)
				if err != nil {
					fatal("agent %d: %v", i, err)
				}
				agents[i] = a
			}
		}(w)
	}
	wg.Wait()
	return agents
}

// untilServed has every agent heartbeat until its first OK, backing off like
// the agents between failures, giving up after giveup. At most concurrency
// agents have an attempt in flight at once (0: no bound).
func untilServed(agents []*agent, cfg *config, concurrency int, giveup time.Duration) *Phase {
	col := newCollector()
	deadline := col.start.Add(giveup)
	if concurrency <= 0 {
		concurrency = len(agents)
	}
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func(a *agent) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(time.Now().UnixNano() + int64(a.index)))
			var bo agentBackoff
			for time.Now().Before(deadline) {
				sem <- struct{}{}
				col.started()
				r := a.heartbeat(cfg)
				<-sem
				col.record(r, a.index)
				if r.code == codes.OK {
					col.firstServed(a.index, r.end)
					return
				}
				d := bo.delay(rng)
				if left := time.Until(deadline); d > left {
					d = left
				}
				time.Sleep(d)
			}
		}(a)
	}
	wg.Wait()
	return col.withServed(col.phase(time.Since(col.start).Seconds()), len(agents))
}

// backToBack: each agent sends its next heartbeat as soon as the last one ended.
func backToBack(agents []*agent, cfg *config, d time.Duration) *Phase {
	col := newCollector()
	end := col.start.Add(d)
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func(a *agent) {
			defer wg.Done()
			for time.Now().Before(end) {
				col.started()
				col.record(a.heartbeat(cfg), a.index)
			}
		}(a)
	}
	wg.Wait()
	return col.phase(time.Since(col.start).Seconds())
}

// openLoop: rate heartbeats/s offered by the whole fleet, each agent on its
// own period with a random phase; a heartbeat is sent when due, whatever
// happened to the previous ones. For d, or with a gate (-sliced) until it
// ends: a call that falls due while the gate is closed is skipped, so each
// slice offers the rate from its start.
func openLoop(agents []*agent, cfg *config, rate float64, d time.Duration, g *gate) *Phase {
	col := newCollector()
	end := col.start.Add(d)
	var ended <-chan struct{} // nil without a gate: never ready
	if g != nil {
		ended = g.done
	}
	period := time.Duration(float64(len(agents)) / rate * float64(time.Second))
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	var tickers, calls sync.WaitGroup
	for _, a := range agents {
		tickers.Add(1)
		go func(a *agent, offset time.Duration) {
			defer tickers.Done()
			for due := col.start.Add(offset); g != nil || due.Before(end); due = due.Add(period) {
				select {
				case <-ended:
					return
				case <-time.After(time.Until(due)):
				}
				if g != nil && !g.isOpen() {
					continue
				}
				col.started()
				calls.Add(1)
				go func() {
					defer calls.Done()
					r := a.heartbeat(cfg)
					col.record(r, a.index)
					if g != nil && r.code == codes.OK {
						g.count(r.end)
					}
				}()
			}
		}(a, time.Duration(rng.Int63n(int64(period))))
	}
	tickers.Wait()
	calls.Wait() // each bounded by the per-call deadline
	if g != nil {
		return col.phase(g.activeSeconds())
	}
	return col.phase(d.Seconds())
}

func main() {
	addr := flag.String("addr", "", "server agent listener, host:port (loopback only)")
	agentsFile := flag.String("agents", "", "file of agents: MACHINE_ID SEED_HEX per line")
	n := flag.Int("n", 0, "use the first N agents of the file (0: all)")
	mode := flag.String("mode", "connect", "connect | b2b | open")
	sliced := flag.Bool("sliced", false, "b2b and open: in slices told on stdin, not for -duration")
	warmup := flag.Duration("slice-warmup", 250*time.Millisecond, "-sliced: not counted at the start of each slice")
	duration := flag.Duration("duration", 10*time.Second, "length of the b2b or open phase")
	rate := flag.Float64("rate", 1000, "open: heartbeats/s offered by the whole fleet")
	deadline := flag.Duration("deadline", 5*time.Second, "per-call deadline")
	dialConcurrency := flag.Int("dial-concurrency", 1000, "connect phase: agents with an attempt in flight at once")
	giveup := flag.Duration("giveup", 120*time.Second, "connect and reconnect phases: give up on an agent after this")
	reconnect := flag.Bool("reconnect", false, "after the run phase, wait for a stdin line, then time the fleet's reconnection")
	resume := flag.Bool("tls-resume", false, "let each agent resume its TLS session on reconnect (the Go agents in the field do not)")
	maxRuntime := flag.Duration("max-runtime", 30*time.Minute, "hard stop of the whole process")
	flag.Parse()

	if *addr == "" || *agentsFile == "" {
		fatal("-addr and -agents are required")
	}
	loopbackOnly(*addr)
	if *mode != "connect" && *mode != "b2b" && *mode != "open" {
		fatal("unknown -mode %q", *mode)
	}
	if *mode == "open" && *rate <= 0 {
		fatal("-rate must be positive")
	}
	time.AfterFunc(*maxRuntime, func() {
		fmt.Fprintln(os.Stderr, "loadgen: -max-runtime reached, exiting")
		os.Exit(3)
	})

	cfg := &config{address: *addr, deadline: *deadline, resume: *resume}
	t0 := time.Now()
	agents := readAgents(*agentsFile, *n, cfg)
	out := Output{Mode: *mode, Address: *addr, Agents: len(agents), DeadlineMs: deadline.Milliseconds(), PrepareSeconds: round3(time.Since(t0).Seconds())}
	if *mode == "open" {
		out.Rate = *rate
	}
	event("prepared", map[string]interface{}{"agents": len(agents)})

	out.Connect = untilServed(agents, cfg, *dialConcurrency, *giveup)
	event("connected", map[string]interface{}{"failed_for_good": *out.Connect.FailedForGood})
	switch {
	case *mode == "b2b" && *sliced:
		out.Run = backToBackSliced(agents, cfg, *warmup)
	case *mode == "b2b":
		out.Run = backToBack(agents, cfg, *duration)
	case *mode == "open" && *sliced:
		g := newGate()
		go g.drive(*warmup)
		out.Run = openLoop(agents, cfg, *rate, 0, g)
	case *mode == "open":
		out.Run = openLoop(agents, cfg, *rate, *duration, nil)
	}
	event("run-done", nil)
	if *reconnect {
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err == nil {
			event("reconnecting", nil)
			out.Reconnect = untilServed(agents, cfg, 0, *giveup)
		}
	}

	for _, p := range []*Phase{out.Connect, out.Run, out.Reconnect} {
		if p != nil {
			out.PushbackTotal += p.Pushback
		}
	}
	out.AgentsServedEver = servedEver.count()
	for _, a := range agents {
		a.close()
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
