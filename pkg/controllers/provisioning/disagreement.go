package provisioning

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// A guard against runaways, whatever their cause: when a pod planned onto a
// NodeClaim is still not bound once its node has initialized, the planner
// believed something kube-scheduler does not (a constraint Backstop does not
// model, say). Planning it again at once would make another NodeClaim for it,
// and another: so the pod is backed off, exponentially, and no NodeClaim is
// made for it until the back-off has passed.

const (
	// bindGrace is how long kube-scheduler gets to bind a pod once the node
	// planned for it has initialized.
	bindGrace = 10 * time.Second
	// disagreementBackoff is the first back-off; it doubles up to disagreementBackoffMax.
	disagreementBackoff    = 10 * time.Second
	disagreementBackoffMax = 10 * time.Minute
)

// awaited is a pending pod whose planned node has initialized.
type awaited struct {
	pod   *corev1.Pod
	claim *v1.NodeClaim
}

// stillWaits decides about a pending pod whose planned node has initialized:
// true while kube-scheduler is given its chance to bind it there; false when
// it should be planned again, at once when other pods took its room (that is
// no disagreement), or after a back-off when the room is there and
// kube-scheduler still did not bind it. bound are the pods bound per node.
func (p *Provisioner) stillWaits(ctx context.Context, a awaited, allocatable map[string]scheduling.Resources, bound map[string][]*corev1.Pod) bool {
	p.initialized(a.pod, a.claim)
	node := a.claim.Status.NodeName
	free := allocatable[node]
	for _, other := range bound[node] {
		free = free.Sub(scheduling.PodRequests(other))
	}
	if !scheduling.PodRequests(a.pod).Fits(free) {
		// kube-scheduler gave the room to others: plan the pod again now.
		p.forgetNomination(a.pod)
		return false
	}
	initialized := meta.FindStatusCondition(a.claim.Status.Conditions, v1.ConditionInitialized).LastTransitionTime.Time
	if p.clock.Since(initialized) < bindGrace {
		return true
	}
	p.forgetNomination(a.pod)
	p.disagreed(ctx, a.pod, nomination{claim: a.claim.Name, node: node, pool: a.claim.Labels[v1.NodePoolLabelKey]})
	return false
}

// backoff is one pod's record of disagreements.
type backoff struct {
	count int
	until time.Time
}

// backingOff reports whether the pod waits out a back-off.
func (p *Provisioner) backingOff(pod *corev1.Pod) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.backoffs[pod.UID]
	return ok && p.clock.Now().Before(b.until)
}

// disagreed records that kube-scheduler did not bind the pod onto the node
// planned for it: an event naming what kube-scheduler said, a count, and a
// back-off after which the pod is planned again.
func (p *Provisioner) disagreed(ctx context.Context, pod *corev1.Pod, n nomination) {
	p.mu.Lock()
	b := p.backoffs[pod.UID]
	delay := min(disagreementBackoff<<min(b.count, 10), disagreementBackoffMax)
	b.count++
	b.until = p.clock.Now().Add(delay)
	p.backoffs[pod.UID] = b
	p.mu.Unlock()

	said := "no reason given"
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Message != "" {
			said = c.Message
		}
	}
	p.metrics.disagreements.WithLabelValues(n.pool).Inc()
	p.recorder.Eventf(pod, nil, corev1.EventTypeWarning, "SchedulerDisagreed", "Provision",
		"Planned onto node %s (nodeclaim/%s), but kube-scheduler did not bind it: %s; planning it again in %s (disagreement %d)",
		n.node, n.claim, said, delay, b.count)
	log.FromContext(ctx).Info("kube-scheduler did not bind a pod onto the node planned for it; backing off",
		"pod", client.ObjectKeyFromObject(pod).String(), "nodeclaim", n.claim, "nodepool", n.pool, "kube-scheduler", said,
		"backoff", delay.String(), "disagreements", b.count)
	go func() {
		select {
		case <-p.clock.After(delay):
			p.batcher.Trigger()
		case <-ctx.Done():
		}
	}()
}

// forgetBound drops the back-offs, nominations and knowledge of pods that are
// no longer pending: bound, deleted or gone. A pod first seen after the
// snapshot listed pods (listed at `listed`) is not in it and still pending:
// forgetting it would make its next update look like a new pod, which
// extends the window.
func (p *Provisioner) forgetBound(pending map[types.UID]bool, pendingKeys map[types.NamespacedName]bool, listed time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, seen := range p.known {
		if !pendingKeys[key] && !seen.After(listed) {
			delete(p.known, key)
		}
	}
	for uid := range p.backoffs {
		if !pending[uid] {
			delete(p.backoffs, uid)
		}
	}
	for uid := range p.nominations {
		if !pending[uid] {
			delete(p.nominations, uid)
		}
	}
	for uid := range p.placed {
		if !pending[uid] {
			delete(p.placed, uid)
		}
	}
}
