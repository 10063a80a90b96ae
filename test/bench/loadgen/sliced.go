package main

import (
	"bufio"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// gate: the sliced mode's switch, driven by stdin lines (see main.go).
type gate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	open   bool
	ended  bool
	from   time.Time // counting starts here: the slice's start plus the warm-up
	ok     int
	active time.Duration // counted time of every slice so far
}

func newGate() *gate {
	g := &gate{}
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
			g.open, g.ended = false, true
		}
		g.cond.Broadcast()
		ended := g.ended
		g.mu.Unlock()
		if ended {
			return
		}
	}
	g.mu.Lock()
	g.open, g.ended = false, true
	g.cond.Broadcast()
	g.mu.Unlock()
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
	g.mu.Lock()
	active := g.active
	g.mu.Unlock()
	return col.phase(active.Seconds())
}
