package nodepool

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// healthWindow is how many of a pool's last outcomes are judged, and
// healthFailures how many failures among them make it unhealthy.
const (
	healthWindow   = 4
	healthFailures = 2
)

// RegistrationHealth remembers, per NodePool, whether the nodes of its last
// few NodeClaims registered: the launch and registration controllers tell
// it, the status controller reads it into the NodeRegistrationHealthy
// condition. It lives in memory; after a restart the condition stays as
// written until new outcomes come in. The zero value is ready; methods on
// nil do nothing.
type RegistrationHealth struct {
	mu    sync.Mutex
	pools map[string]*outcomes
	// changed holds the pools with outcomes the status controller has not
	// been asked to judge; kick wakes the source that asks it.
	changed map[string]bool
	kick    chan struct{}
}

// outcomes is a ring of a pool's last results (true: registered), why the
// last failure failed, and the pool's and its NodeClass's generations they
// were recorded under.
type outcomes struct {
	ring              [healthWindow]bool
	n, next           int
	reason, message   string
	poolGen, classGen int64
	// observed is false until the status controller told the generations:
	// outcomes recorded before are kept then.
	observed bool
}

func (h *RegistrationHealth) record(pool string, ok bool, reason, message string) {
	if h == nil || pool == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pools == nil {
		h.pools = map[string]*outcomes{}
	}
	o := h.pools[pool]
	if o == nil {
		o = &outcomes{}
		h.pools[pool] = o
	}
	o.ring[o.next] = ok
	o.next = (o.next + 1) % healthWindow
	o.n = min(o.n+1, healthWindow)
	if !ok {
		o.reason, o.message = reason, message
	}
	// The NodeClaim write that came before this outcome may already have
	// had its pool judged, without it: the pool is judged again.
	if h.changed == nil {
		h.changed = map[string]bool{}
	}
	h.changed[pool] = true
	select {
	case h.kickLocked() <- struct{}{}:
	default:
	}
}

func (h *RegistrationHealth) kickLocked() chan struct{} {
	if h.kick == nil {
		h.kick = make(chan struct{}, 1)
	}
	return h.kick
}

// Source queues, for the status controller, each pool with outcomes it has
// not judged: once however many came meanwhile, and never blocking the
// controllers that tell them.
func (h *RegistrationHealth) Source() source.Source {
	return source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		h.mu.Lock()
		kick := h.kickLocked()
		h.mu.Unlock()
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-kick:
				}
				h.mu.Lock()
				changed := h.changed
				h.changed = nil
				h.mu.Unlock()
				for pool := range changed {
					q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: pool}})
				}
			}
		}()
		return nil
	})
}

// Registered records that a NodeClaim of the pool got its node.
func (h *RegistrationHealth) Registered(pool string) { h.record(pool, true, "", "") }

// Failed records that a NodeClaim of the pool was given up, its launch
// failing or its node not registering, and why.
func (h *RegistrationHealth) Failed(pool, reason, message string) {
	h.record(pool, false, reason, message)
}

// Observe tells the pool's and its NodeClass's generations: the outcomes
// recorded before a newer one are forgotten, since the change may have
// mended (or broken) what they judged. An older pair, from a cache that
// has not caught up, changes nothing.
func (h *RegistrationHealth) Observe(pool string, poolGen, classGen int64) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pools == nil {
		h.pools = map[string]*outcomes{}
	}
	o := h.pools[pool]
	switch {
	case o == nil:
		h.pools[pool] = &outcomes{poolGen: poolGen, classGen: classGen, observed: true}
	case !o.observed:
		o.poolGen, o.classGen, o.observed = poolGen, classGen, true
	case poolGen > o.poolGen || classGen > o.classGen:
		*o = outcomes{poolGen: max(poolGen, o.poolGen), classGen: max(classGen, o.classGen), observed: true}
	}
}

// Forget drops a deleted pool.
func (h *RegistrationHealth) Forget(pool string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.pools, pool)
}

// Status judges the pool's last outcomes: False (with the last failure's
// reason and message) when enough of them failed, True when one
// registered; ok is false when there is nothing to judge yet.
func (h *RegistrationHealth) Status(pool string) (status metav1.ConditionStatus, reason, message string, ok bool) {
	if h == nil {
		return "", "", "", false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.pools[pool]
	if o == nil {
		return "", "", "", false
	}
	failed, registered := 0, 0
	for i := range o.n {
		if o.ring[i] {
			registered++
		} else {
			failed++
		}
	}
	switch {
	case failed >= healthFailures:
		return metav1.ConditionFalse, o.reason, o.message, true
	case registered > 0:
		return metav1.ConditionTrue, ConditionNodeRegistrationHealthyReason, "", true
	}
	return "", "", "", false
}

// ConditionNodeRegistrationHealthyReason is the reason of a True
// NodeRegistrationHealthy condition.
const ConditionNodeRegistrationHealthyReason = "NodeRegistrationHealthy"
