// Package provisioning turns pending pods into NodeClaims: it watches for pods
// kube-scheduler could not place, gathers them into batches, plans capacity
// with pkg/scheduling and creates the NodeClaims of the plan.
package provisioning

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// Batcher gathers triggers into windows: a window opens on the first trigger,
// each trigger extends it to the idle duration after that trigger, and it closes
// when idle for that long or when it has been open for the max duration.
type Batcher struct {
	clock   clock.Clock
	idle    time.Duration
	max     time.Duration
	trigger chan struct{}

	mu   sync.Mutex
	last time.Time
	// nudging is set while a nudge waits to wake the batcher.
	nudging atomic.Bool
}

// NewBatcher returns a batcher on the given clock.
func NewBatcher(clk clock.Clock, idle, max time.Duration) *Batcher {
	return &Batcher{clock: clk, idle: idle, max: max, trigger: make(chan struct{}, 1)}
}

// Trigger opens a window, or extends the open one. It never blocks.
func (b *Batcher) Trigger() {
	b.mu.Lock()
	b.last = b.clock.Now()
	b.mu.Unlock()
	b.Wake()
}

// Wake asks for a batch without extending the open window: a window it
// opens closes as soon as the idle duration since the last Trigger has
// passed (at once, when that was long ago). It never blocks.
func (b *Batcher) Wake() {
	select {
	case b.trigger <- struct{}{}:
	default:
	}
}

// Nudge asks for a batch one idle duration from now without extending the
// window, and folds the nudges that arrive meanwhile into that one: updates
// of pods already pending (kube-scheduler rewrites their condition on every
// attempt, hundreds a second in a scale-up) plan at most once per idle
// duration instead of once per update.
func (b *Batcher) Nudge() {
	if !b.nudging.CompareAndSwap(false, true) {
		return
	}
	go func() {
		<-b.clock.After(b.idle)
		b.nudging.Store(false)
		b.Wake()
	}()
}

// SinceLastTrigger is how long ago the last Trigger came: at a batch, how
// long after the last new pod it started.
func (b *Batcher) SinceLastTrigger() time.Duration { return b.sinceLast() }

func (b *Batcher) sinceLast() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.clock.Since(b.last)
}

// Wait blocks until a window opens and then closes; it returns false when ctx
// ends first. Triggers that arrive while nobody waits open the next window.
func (b *Batcher) Wait(ctx context.Context) bool { return b.WaitWith(ctx, 0, nil) }

// WaitWith is Wait that, while the window is open, calls during every
// `every` if a Trigger came since the last call that reported it started
// (nil: never). during must not block for long: the window cannot close
// while it runs.
func (b *Batcher) WaitWith(ctx context.Context, every time.Duration, during func() bool) bool {
	select {
	case <-b.trigger:
	case <-ctx.Done():
		return false
	}
	maxTimer := b.clock.NewTimer(b.max)
	defer maxTimer.Stop()
	idleTimer := b.clock.NewTimer(b.idle - b.sinceLast())
	defer func() { idleTimer.Stop() }()
	var tick <-chan time.Time
	var seen time.Time
	if during != nil && every > 0 {
		tick = b.clock.After(every)
	}
	for {
		select {
		case <-tick:
			b.mu.Lock()
			last := b.last
			b.mu.Unlock()
			if last.After(seen) && during() {
				seen = last
			}
			tick = b.clock.After(every)
		case <-b.trigger:
			// The idle deadline moved; it is checked when the timer fires.
		case <-idleTimer.C():
			remaining := b.idle - b.sinceLast()
			if remaining <= 0 {
				return true
			}
			idleTimer = b.clock.NewTimer(remaining)
		case <-maxTimer.C():
			return true
		case <-ctx.Done():
			return false
		}
	}
}
