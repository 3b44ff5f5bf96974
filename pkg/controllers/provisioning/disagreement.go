package provisioning

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
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
func (p *Provisioner) disagreed(ctx context.Context, pod *corev1.Pod, claim *v1.NodeClaim) {
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
	pool := claim.Labels[v1.NodePoolLabelKey]
	p.metrics.disagreements.WithLabelValues(pool).Inc()
	p.recorder.Eventf(pod, claim, corev1.EventTypeWarning, "SchedulerDisagreed", "Provision",
		"Planned onto node %s (nodeclaim/%s), but kube-scheduler did not bind it: %s; planning it again in %s (disagreement %d)",
		claim.Status.NodeName, claim.Name, said, delay, b.count)
	log.FromContext(ctx).Info("kube-scheduler did not bind a pod onto the node planned for it; backing off",
		"pod", client.ObjectKeyFromObject(pod).String(), "nodeclaim", claim.Name, "nodepool", pool, "kube-scheduler", said,
		"backoff", delay.String(), "disagreements", b.count)
	go func() {
		select {
		case <-p.clock.After(delay):
			p.batcher.Trigger()
		case <-ctx.Done():
		}
	}()
}

// forgetBackoffs drops the records of pods that are no longer pending: bound,
// deleted or gone.
func (p *Provisioner) forgetBackoffs(pending map[types.UID]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for uid := range p.backoffs {
		if !pending[uid] {
			delete(p.backoffs, uid)
		}
	}
}
