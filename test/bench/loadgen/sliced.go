package main

import (
	"bufio"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// gate: -sliced's switch, driven by stdin lines (see main.go).
type gate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	open   bool
	ended  bool
	done   chan struct{} // closed once ended
	from   time.Time     // counting starts here: the slice's start plus the warm-up
	ok     int
	active time.Duration // counted time of every slice so far
}

func newGate() *gate {
	g := &gate{done: make(chan struct{})}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// wait blocks while the gate is closed; false once the phase has ended.
func (g *gate) wait() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for !g.open && !g.ended {
		g.cond.Wait()
	}
	return !g.ended
}

// isOpen: whether a call may start now (open loop: a due call is skipped while closed).
func (g *gate) isOpen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// count records an OK call that ended at end, if inside the slice's window.
func (g *gate) count(end time.Time) {
	g.mu.Lock()
	if g.open && end.After(g.from) {
		g.ok++
	}
	g.mu.Unlock()
}

// drive reads "go", "pause" and "end" lines until "end" or EOF.
func (g *gate) drive(warmup time.Duration) {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		g.mu.Lock()
		switch strings.TrimSpace(in.Text()) {
		case "go":
			if !g.open {
				g.open, g.ok, g.from = true, 0, time.Now().Add(warmup)
			}
		case "pause":
			if g.open {
				g.open = false
				secs := time.Since(g.from)
				if secs < 0 {
					secs = 0
				}
				g.active += secs
				event("slice", map[string]interface{}{"ok": g.ok, "seconds": round3(secs.Seconds())})
			}
		case "end":
			g.end()
		}
		g.cond.Broadcast()
		ended := g.ended
		g.mu.Unlock()
		if ended {
			return
		}
	}
	g.mu.Lock()
	g.end()
	g.cond.Broadcast()
	g.mu.Unlock()
}

// end: called with mu held.
func (g *gate) end() {
	if !g.ended {
		g.open, g.ended = false, true
		close(g.done)
	}
}

// activeSeconds: the slices' counted time so far.
func (g *gate) activeSeconds() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.active.Seconds()
}

// backToBackSliced: back to back while the gate is open. The phase's figures
// cover every call; its seconds (so its ok_per_s) only the slices' counted time.
func backToBackSliced(agents []*agent, cfg *config, warmup time.Duration) *Phase {
	col := newCollector()
	g := newGate()
	go g.drive(warmup)
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func(a *agent) {
			defer wg.Done()
			for g.wait() {
				col.started()
				r := a.heartbeat(cfg)
				col.record(r, a.index)
				if r.code == codes.OK {
					g.count(r.end)
				}
			}
		}(a)
	}
	wg.Wait()
	return col.phase(g.activeSeconds())
}
