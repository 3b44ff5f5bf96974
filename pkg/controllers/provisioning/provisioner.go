package provisioning

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// Options configure provisioning.
type Options struct {
	BatchIdleDuration time.Duration
	BatchMaxDuration  time.Duration
	PreferencePolicy  scheduling.PreferencePolicy
	// NominationTTL bounds how long a pod counts on an in-flight NodeClaim
	// before it is planned again.
	NominationTTL time.Duration
	// Process names this controller process on the NodeClaims it creates
	// (cloudprovider.CreatedByAnnotation).
	Process string
	// Early plans pods kube-scheduler has not judged yet (AwaitsScheduler)
	// with the Unschedulable ones.
	Early bool
	// FillEarly plans the pods seen so far every fillEvery while a window
	// is open and new pods keep coming, and creates the NodeClaims they fill
	// (no option has room for another of the batch's smallest pods) without
	// waiting for the window to close; the rest wait for it.
	FillEarly bool
	// ListPods lists every pod of the informer cache, the cache's own
	// objects; nil lists them through the client, which copies each pod
	// into a new list (a kilobyte a pod, for every plan).
	ListPods func(context.Context) ([]*corev1.Pod, error)
}

// Provisioner plans capacity for batches of pending pods and creates NodeClaims.
type Provisioner struct {
	client   client.Client
	recorder events.EventRecorder
	cloud    cloudprovider.CloudProvider
	clock    clock.Clock
	opts     Options
	batcher  *Batcher
	metrics  *Metrics

	// rechecking is set while a re-check of waiting pods is scheduled.
	rechecking atomic.Bool
	// unplaced is how many pods the last batch could place nowhere.
	unplaced atomic.Int64
	// claims keep what plans read of in-flight NodeClaims.
	claims claimViews
	// filling is held while an early round plans and counts the NodeClaims
	// it will create; a batch waits for that (not for the creates), so no
	// pod is planned twice.
	filling sync.Mutex
	// creating bounds the NodeClaim creates running at once, over batches
	// and early rounds.
	creating chan struct{}

	mu          sync.Mutex
	nominations map[types.UID]nomination
	// fallbacks remember, per pod, the pool whose launch failed and why, until
	// the pod is planned again.
	fallbacks map[types.UID]fallback
	// backoffs hold pods kube-scheduler would not bind where they were planned.
	backoffs map[types.UID]backoff
	// known are the pending pods already seen, with when: only a new one
	// extends a window.
	known map[types.NamespacedName]time.Time
	// placed are pods of leaving nodes planned onto registered nodes, by node.
	placed map[types.UID]string
	// launched are the provider ids of instances made for NodeClaims, by
	// NodeClaim, until the cache's NodeClaim records them.
	launched map[string]string
	// created are the NodeClaims this process created or is creating, until
	// a plan's read of the cache shows them, they are deleted, or
	// nominationGrace passes: a plan made meanwhile counts their room, which
	// the pods of the next batch may use.
	created map[string]createdClaim
}

type createdClaim struct {
	claim *v1.NodeClaim
	at    time.Time
}

type fallback struct {
	pool, reason string
}

type nomination struct {
	claim string
	pod   types.NamespacedName
	at    time.Time
	// node is set once the claim's node has initialized: kube-scheduler could
	// bind the pod from then on.
	node, pool string
}

// New returns a provisioner; Register wires it into a manager.
func New(c client.Client, recorder events.EventRecorder, cloud cloudprovider.CloudProvider, clk clock.Clock, metrics *Metrics, opts Options) *Provisioner {
	if opts.NominationTTL == 0 {
		opts.NominationTTL = 20 * time.Minute
	}
	return &Provisioner{
		client: c, recorder: recorder, cloud: cloud, clock: clk, opts: opts, metrics: metrics,
		batcher: NewBatcher(clk, opts.BatchIdleDuration, opts.BatchMaxDuration), nominations: map[types.UID]nomination{},
		fallbacks: map[types.UID]fallback{}, backoffs: map[types.UID]backoff{}, known: map[types.NamespacedName]time.Time{},
		placed: map[types.UID]string{}, launched: map[string]string{},
		created: map[string]createdClaim{}, creating: make(chan struct{}, createWorkers),
	}
}

// observe records a pending pod and reports whether it is new.
func (p *Provisioner) observe(pod types.NamespacedName) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.known[pod]; ok {
		return false
	}
	p.known[pod] = p.clock.Now()
	return true
}

// waiting reports whether pending pods are known: only then can a change of
// a NodePool matter.
func (p *Provisioner) waiting() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.known) > 0
}

// Trigger tells the provisioner a pod may need capacity.
func (p *Provisioner) Trigger() { p.batcher.Trigger() }

// Launched notes the instance made for a NodeClaim, before the NodeClaim's
// record of it reaches the cache: a node that joins meanwhile is that
// NodeClaim's capacity, not room of its own.
func (p *Provisioner) Launched(claim *v1.NodeClaim, providerID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.launched[claim.Name] = providerID
}

// launchedInstances are the instances launched for live NodeClaims whose
// record of them the cache does not show yet, by provider id; entries the
// cache has caught up with, or whose NodeClaim is gone, are dropped.
func (p *Provisioner) launchedInstances(live map[string]*v1.NodeClaim) map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]string{}
	for name, id := range p.launched {
		c, ok := live[name]
		if !ok || c.Status.ProviderID != "" {
			delete(p.launched, name)
			continue
		}
		if c.Status.NodeName == "" && c.DeletionTimestamp == nil {
			out[id] = name
		}
	}
	return out
}

// deleted notes that a NodeClaim is gone: one this process created no
// longer counts, even if no plan saw it.
func (p *Provisioner) deleted(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.created, name)
}

// withCreated adds to the NodeClaims the cache shows those this process
// created that it does not show yet; entries it shows, and those older than
// nominationGrace, are dropped.
func (p *Provisioner) withCreated(live map[string]*v1.NodeClaim) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, c := range p.created {
		if _, ok := live[name]; ok || p.clock.Since(c.at) > nominationGrace {
			delete(p.created, name)
			continue
		}
		live[name] = c.claim
	}
}

// LaunchFailed takes back the pods of a NodeClaim given up for lack of
// capacity and plans them again at once (after one idle window); what ran out
// is already marked unavailable, so the plan moves on. Its pods were
// nominated before it was created, so none can be nominated to it later.
func (p *Provisioner) LaunchFailed(claim *v1.NodeClaim, reason string) {
	p.mu.Lock()
	delete(p.created, claim.Name)
	fb := fallback{pool: claim.Labels[v1.NodePoolLabelKey], reason: reason}
	for uid, n := range p.nominations {
		if n.claim == claim.Name {
			delete(p.nominations, uid)
			p.fallbacks[uid] = fb
		}
	}
	p.mu.Unlock()
	p.batcher.Trigger()
}

// Start runs batches until ctx ends; it is a manager Runnable and runs on the
// leader only.
func (p *Provisioner) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("provisioner")
	failures, unplacedRounds := 0, 0
	var during func() bool
	if p.opts.FillEarly {
		during = func() bool { return p.fillEarly(log.IntoContext(ctx, logger)) }
	}
	for p.batcher.WaitWith(ctx, fillEvery, during) {
		if err := p.Provision(log.IntoContext(ctx, logger)); err != nil {
			failures++
			wait := min(retryBase<<min(failures-1, 10), retryMax)
			cause := cloudprovider.CauseOf(err)
			logger.Error(err, "provisioning failed; planning the batch again", "error-code", cause.Code, "request-id", cause.RequestID,
				"retry-in", wait.String())
			// Plan again even if no pod changes, backing off while it fails.
			select {
			case <-p.clock.After(wait):
			case <-ctx.Done():
				return nil
			}
			p.batcher.Trigger()
			continue
		}
		failures = 0
		after := time.Duration(0)
		switch left := p.unplaced.Load(); {
		case p.pendingWork():
			// Pods wait on NodeClaims coming up; look again shortly in case
			// kube-scheduler gives their room to others.
			after = recheck
		case left > 0:
			// Pods no pool could take: what stopped them may pass without
			// any pod changing (a NodePool turning Ready, capacity marks
			// expiring), and kube-scheduler does not rewrite a condition that
			// says the same. Look again, less often while nothing changes.
			unplacedRounds++
			after = min(unplacedBase<<min(unplacedRounds-1, 4), unplacedMax)
		default:
			unplacedRounds = 0
		}
		if after > 0 && p.rechecking.CompareAndSwap(false, true) {
			go func() {
				defer p.rechecking.Store(false)
				select {
				case <-p.clock.After(after):
					p.batcher.Wake()
				case <-ctx.Done():
				}
			}()
		}
	}
	return nil
}

// unplacedBase and unplacedMax bound the re-checks of pods no pool could take.
const (
	unplacedBase = 10 * time.Second
	unplacedMax  = 2 * time.Minute
)

// NeedLeaderElection makes the provisioner run on the leader only.
func (p *Provisioner) NeedLeaderElection() bool { return true }

// Provision plans one batch and creates its NodeClaims.
func (p *Provisioner) Provision(ctx context.Context) error {
	logger := log.FromContext(ctx)
	sinceTrigger, waiting := p.batcher.SinceLastTrigger(), p.clock.Now()
	// An early round still creating has nominated nothing yet.
	p.filling.Lock()
	defer p.filling.Unlock()
	began := p.clock.Now()
	waited := began.Sub(waiting)
	snap, err := p.takeSnapshot(ctx)
	if err != nil {
		return err
	}
	if len(snap.pending) == 0 {
		p.unplaced.Store(0)
		return nil
	}
	start := p.clock.Now()
	snapshotTook := start.Sub(began)
	plan := scheduling.Solve(snap.input)
	p.unplaced.Store(int64(len(plan.Unschedulable)))
	p.metrics.observe(len(snap.pending), p.clock.Since(start))
	planned := logger.V(1)
	if len(plan.NewNodeClaims) > 0 || len(plan.Unschedulable) > 0 {
		// A plan that only confirms existing room is routine.
		planned = logger
	}
	planned.Info("planned capacity", "pods", len(snap.pending), "nodeclaims", len(plan.NewNodeClaims),
		"existing-placements", len(plan.Existing), "unschedulable", len(plan.Unschedulable), "duration", p.clock.Since(start).String(),
		"snapshot", snapshotTook.String(), "since-last-new-pod", sinceTrigger.String(), "waited-for-early-round", waited.String())

	errs := p.createAll(ctx, snap, plan.NewNodeClaims)
	for _, placement := range plan.Existing {
		if AwaitsScheduler(placement.Pod) && !snap.inFlight[placement.Node] {
			// kube-scheduler will place it on room that exists; nothing
			// to say.
			continue
		}
		what := "node/" + placement.Node
		if snap.inFlight[placement.Node] {
			what = "nodeclaim/" + placement.Node
		}
		if snap.displaced[placement.Pod.UID] {
			p.remember(placement, snap.inFlight[placement.Node])
		}
		p.recorder.Eventf(placement.Pod, nil, corev1.EventTypeNormal, "Nominated", "Provision", "Pod should schedule on: %s", what)
	}
	for _, u := range plan.Unschedulable {
		if AwaitsScheduler(u.Pod) {
			// Said once kube-scheduler has judged it too.
			continue
		}
		msg := u.Message(plan.PoolOrder)
		p.recorder.Eventf(u.Pod, nil, corev1.EventTypeWarning, "FailedScheduling", "Provision", "Failed to schedule pod: %s", msg)
		logger.Info("pod cannot be scheduled", "pod", client.ObjectKeyFromObject(u.Pod).String(), "reason", msg)
	}
	if len(errs) > 0 {
		return fmt.Errorf("creating %d of %d nodeclaims failed, first: %w", len(errs), len(plan.NewNodeClaims), errs[0])
	}
	return nil
}

// createAll creates planned NodeClaims concurrently, each launched as soon
// as it exists, and nominates their pods.
func (p *Provisioner) createAll(ctx context.Context, snap *snapshot, claims []*scheduling.NewNodeClaim) []error {
	return p.postAll(ctx, p.reserve(snap, claims))
}

// reservation is a planned NodeClaim named and counted as created, its pods
// nominated to it, before its create: a plan made meanwhile counts it.
type reservation struct {
	planned   *scheduling.NewNodeClaim
	claim     *v1.NodeClaim
	fallbacks map[types.UID]fallback
	// posted is set once the API server created the NodeClaim.
	posted bool
}

// reserve counts the planned NodeClaims as created and nominates their pods.
func (p *Provisioner) reserve(snap *snapshot, claims []*scheduling.NewNodeClaim) []reservation {
	out := make([]reservation, 0, len(claims))
	for _, nc := range claims {
		claim := p.newClaim(snap.pools[nc.NodePool], nc, nil)
		p.countCreated(claim)
		out = append(out, reservation{planned: nc, claim: claim, fallbacks: p.nominate(nc.Pods, claim)})
	}
	return out
}

// postAll creates reserved NodeClaims concurrently (at most createWorkers
// at once), marking those created posted; one that fails is taken back,
// its pods planned again. Their
// events wait until all are created: the API server has better things to do
// than record a nomination per pod while claims queue.
func (p *Provisioner) postAll(ctx context.Context, reserved []reservation) []error {
	if len(reserved) == 0 {
		return nil
	}
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error
		began = p.clock.Now()
	)
	for i, r := range reserved {
		wg.Add(1)
		p.creating <- struct{}{}
		go func() {
			defer func() { <-p.creating; wg.Done() }()
			if err := p.post(ctx, r.claim, r.planned); err != nil {
				p.takeBack(r)
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
				return
			}
			reserved[i].posted = true
		}()
	}
	wg.Wait()
	log.FromContext(ctx).V(1).Info("created nodeclaims", "nodeclaims", len(reserved)-len(errs), "failed", len(errs), "duration", p.clock.Since(began).String())
	for _, r := range reserved {
		if !r.posted {
			continue
		}
		// A launch that failed at once took its pods back already.
		for _, pod := range p.nominatedTo(r) {
			p.recorder.Eventf(pod, r.claim, corev1.EventTypeNormal, "Nominated", "Provision", "Pod should schedule on: nodeclaim/%s", r.claim.Name)
		}
		p.reportFallbacks(r.planned.Pods, r.claim, r.fallbacks)
	}
	return errs
}

// nominatedTo are the reservation's pods still nominated to its NodeClaim.
func (p *Provisioner) nominatedTo(r reservation) []*corev1.Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*corev1.Pod
	for _, pod := range r.planned.Pods {
		if n, ok := p.nominations[pod.UID]; ok && n.claim == r.claim.Name {
			out = append(out, pod)
		}
	}
	return out
}

// takeBack undoes the reservation of a NodeClaim whose create failed: it
// counts no more, and its pods, with the fallbacks they carried, are
// planned again.
func (p *Provisioner) takeBack(r reservation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.created, r.claim.Name)
	for _, pod := range r.planned.Pods {
		if n, ok := p.nominations[pod.UID]; ok && n.claim == r.claim.Name {
			delete(p.nominations, pod.UID)
		}
		if fb, ok := r.fallbacks[pod.UID]; ok {
			if _, newer := p.fallbacks[pod.UID]; !newer {
				p.fallbacks[pod.UID] = fb
			}
		}
	}
}

// fillEarly plans the pods seen so far of a window still open and creates
// the NodeClaims they fill, in the background; the batch that closes the
// window waits for its plan (not its creates) and plans the rest. It
// reports whether it started: a round still planning when the next is due
// is let be.
func (p *Provisioner) fillEarly(ctx context.Context) bool {
	if !p.filling.TryLock() {
		return false
	}
	go func() {
		// A batch may plan once the round has reserved: it counts these
		// NodeClaims and their pods while they are being created.
		if errs := p.postAll(ctx, p.reserveFilled(ctx)); len(errs) > 0 {
			// Their pods are planned again when the window closes.
			cause := cloudprovider.CauseOf(errs[0])
			log.FromContext(ctx).Error(errs[0], "creating filled nodeclaims early failed; the batch plans their pods", "failed", len(errs),
				"error-code", cause.Code, "request-id", cause.RequestID)
		}
	}()
	return true
}

// reserveFilled plans the pods seen so far and reserves the NodeClaims they
// fill; it releases filling, which the caller holds.
func (p *Provisioner) reserveFilled(ctx context.Context) []reservation {
	defer p.filling.Unlock()
	snap, err := p.takeSnapshot(ctx)
	if err != nil || len(snap.pending) == 0 {
		return nil
	}
	full := filled(scheduling.Solve(snap.input).NewNodeClaims, snap)
	if len(full) == 0 {
		return nil
	}
	log.FromContext(ctx).Info("creating filled nodeclaims while the batch window is open", "pods", len(snap.pending), "nodeclaims", len(full))
	return p.reserve(snap, full)
}

// filled are the planned NodeClaims no pod of the batch could join: on
// every instance type still possible, the room left would not take the
// batch's smallest pod. Claims holding pods of leaving nodes wait for the
// batch.
func filled(claims []*scheduling.NewNodeClaim, snap *snapshot) []*scheduling.NewNodeClaim {
	var smallest scheduling.Resources
	for i, pod := range snap.pending {
		r := scheduling.PodRequests(pod)
		if i == 0 {
			smallest = r
			continue
		}
		smallest.CPU, smallest.Memory, smallest.Pods = min(smallest.CPU, r.CPU), min(smallest.Memory, r.Memory), min(smallest.Pods, r.Pods)
	}
	smallest.Storage, smallest.Extended = 0, nil
	var out []*scheduling.NewNodeClaim
next:
	for _, nc := range claims {
		for _, pod := range nc.Pods {
			if snap.displaced[pod.UID] {
				continue next
			}
		}
		for _, it := range nc.InstanceTypes {
			if smallest.Fits(it.Allocatable().Sub(nc.Requests)) {
				continue next
			}
		}
		out = append(out, nc)
	}
	return out
}

// create turns a planned NodeClaim into an API object, with extra
// annotations besides the pool's, and creates it.
func (p *Provisioner) create(ctx context.Context, pool *v1.NodePool, nc *scheduling.NewNodeClaim, extra map[string]string) (*v1.NodeClaim, error) {
	claim := p.newClaim(pool, nc, extra)
	p.countCreated(claim)
	if err := p.post(ctx, claim, nc); err != nil {
		p.takeBack(reservation{planned: nc, claim: claim})
		return nil, err
	}
	return claim, nil
}

// newClaim is the API object of a planned NodeClaim. It is named here, as
// the API server would name it from GenerateName, so that it can be counted
// before it is created.
func (p *Provisioner) newClaim(pool *v1.NodePool, nc *scheduling.NewNodeClaim, extra map[string]string) *v1.NodeClaim {
	labels := map[string]string{}
	for k, v := range pool.Spec.Template.ObjectMeta.Labels {
		labels[k] = v
	}
	for k, v := range nc.Labels {
		labels[k] = v
	}
	labels[v1.NodePoolLabelKey] = pool.Name
	var reqs []v1.NodeSelectorRequirementWithMinValues
	for _, r := range nc.Requirements.ToAPI() {
		// The pool is the NodeClaim's label; the CRD keeps the karpenter.sh
		// domain out of requirements.
		if r.Key != v1.NodePoolLabelKey {
			reqs = append(reqs, r)
		}
	}
	annotations := map[string]string{}
	for k, v := range pool.Spec.Template.ObjectMeta.Annotations {
		annotations[k] = v
	}
	annotations[v1.NodePoolHashAnnotationKey] = pool.TemplateHash()
	annotations[v1.NodePoolHashVersionAnnotationKey] = v1.NodePoolHashVersion
	for k, v := range extra {
		annotations[k] = v
	}
	if p.opts.Process != "" {
		annotations[cloudprovider.CreatedByAnnotation] = p.opts.Process
	}
	claim := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:        pool.Name + "-" + utilrand.String(5),
			Finalizers:  []string{v1.TerminationFinalizer},
			Labels:      labels,
			Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1.SchemeGroupVersion.String(), Kind: "NodePool", Name: pool.Name, UID: pool.UID,
				BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: v1.NodeClaimSpec{
			Taints:                 nc.Taints,
			StartupTaints:          nc.StartupTaints,
			Requirements:           reqs,
			Resources:              v1.ResourceRequirements{Requests: nc.Requests.List()},
			NodeClassRef:           pool.Spec.Template.Spec.NodeClassRef,
			TerminationGracePeriod: pool.Spec.Template.Spec.TerminationGracePeriod,
			ExpireAfter:            pool.Spec.Template.Spec.ExpireAfter,
		},
	}
	return claim
}

// countCreated counts a NodeClaim about to be created in every plan from
// now on, until a plan's read of the cache shows it (withCreated).
func (p *Provisioner) countCreated(claim *v1.NodeClaim) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.created[claim.Name] = createdClaim{claim: claim.DeepCopy(), at: p.clock.Now()}
}

// post creates a NodeClaim. A name the API server already has (another
// NodeClaim took it) fails the create like any error: its pods are planned
// again, under a new name.
func (p *Provisioner) post(ctx context.Context, claim *v1.NodeClaim, nc *scheduling.NewNodeClaim) error {
	pool := claim.Labels[v1.NodePoolLabelKey]
	if err := p.client.Create(ctx, claim); err != nil {
		return fmt.Errorf("creating a nodeclaim for nodepool %s: %w", pool, err)
	}
	log.FromContext(ctx).Info("created nodeclaim", "nodeclaim", claim.Name, "nodepool", pool,
		"pods", len(nc.Pods), "instance-types", len(nc.InstanceTypes), "requests", nc.Requests.String())
	return nil
}

// reportFallbacks records, for pods whose last NodeClaim ran out of capacity,
// where they went instead: an event on the pod and the new NodeClaim, and a count.
// fallbacks are those nominate took for the claim's pods.
func (p *Provisioner) reportFallbacks(pods []*corev1.Pod, claim *v1.NodeClaim, fallbacks map[types.UID]fallback) {
	to := claim.Labels[v1.NodePoolLabelKey]
	seen := map[fallback]bool{}
	for _, pod := range pods {
		fb, ok := fallbacks[pod.UID]
		if !ok {
			continue
		}
		p.metrics.fallbacks.WithLabelValues(fb.pool, to, fb.reason).Inc()
		p.recorder.Eventf(pod, claim, corev1.EventTypeWarning, "Fallback", "Provision",
			"NodePool %s could not launch (%s); planned on NodePool %s, nodeclaim/%s", fb.pool, fb.reason, to, claim.Name)
		if !seen[fb] {
			seen[fb] = true
			p.recorder.Eventf(claim, nil, corev1.EventTypeNormal, "Fallback", "Provision",
				"Created for pods that NodePool %s could not launch (%s)", fb.pool, fb.reason)
		}
	}
}

// nominate remembers that the pods will land on the claim, not yet created,
// and takes the fallbacks the pods carried to it: a launch failure of this
// very claim may set new ones at any moment after its create.
func (p *Provisioner) nominate(pods []*corev1.Pod, claim *v1.NodeClaim) map[types.UID]fallback {
	p.mu.Lock()
	defer p.mu.Unlock()
	taken := map[types.UID]fallback{}
	now := p.clock.Now()
	for _, pod := range pods {
		p.nominations[pod.UID] = nomination{claim: claim.Name, pod: client.ObjectKeyFromObject(pod), at: now}
		if fb, ok := p.fallbacks[pod.UID]; ok {
			taken[pod.UID] = fb
			delete(p.fallbacks, pod.UID)
		}
	}
	return taken
}

// Nominated reports whether pods still to come, pending or on a leaving
// node, are planned onto the NodeClaim.
func (p *Provisioner) Nominated(ctx context.Context, claim string) bool {
	p.mu.Lock()
	var pods []types.NamespacedName
	for _, n := range p.nominations {
		if n.claim == claim {
			pods = append(pods, n.pod)
		}
	}
	p.mu.Unlock()
	for _, key := range pods {
		pod := &corev1.Pod{}
		// A bound pod keeps a nomination only while its node is leaving:
		// it is still to come.
		if err := p.client.Get(ctx, key, pod); err == nil && (p.provisionable(pod) || (pod.Spec.NodeName != "" && pod.DeletionTimestamp == nil)) {
			return true
		}
	}
	return false
}

// remember where a pod of a leaving node was planned on capacity that exists:
// an in-flight NodeClaim, as a nomination; a registered node, as placed.
func (p *Provisioner) remember(placement scheduling.Placement, inFlight bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	uid := placement.Pod.UID
	if inFlight {
		p.nominations[uid] = nomination{claim: placement.Node, pod: client.ObjectKeyFromObject(placement.Pod), at: p.clock.Now()}
		return
	}
	p.placed[uid] = placement.Node
}

func (p *Provisioner) forgetPlacement(pod *corev1.Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.placed, pod.UID)
}

func (p *Provisioner) placedFor(pod *corev1.Pod) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.placed[pod.UID]
}

// ReplacementReady reports whether a pod on a leaving node has a Ready place
// to go: planned onto a registered node, or onto a NodeClaim whose node has
// initialized. False while it is not planned yet.
func (p *Provisioner) ReplacementReady(ctx context.Context, pod *corev1.Pod) bool {
	if node := p.placedFor(pod); node != "" && node != pod.Spec.NodeName {
		return true
	}
	p.mu.Lock()
	n, ok := p.nominations[pod.UID]
	p.mu.Unlock()
	if !ok {
		return false
	}
	claim := &v1.NodeClaim{}
	if err := p.client.Get(ctx, client.ObjectKey{Name: n.claim}, claim); err != nil {
		return false
	}
	// A nomination to the node the pod is on is the one that brought it
	// there, not a new place.
	return claim.DeletionTimestamp == nil && claim.Status.NodeName != pod.Spec.NodeName &&
		meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionInitialized)
}

func (p *Provisioner) forgetNomination(pod *corev1.Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.nominations, pod.UID)
}

// pendingWork reports whether pods wait on NodeClaims still coming up.
func (p *Provisioner) pendingWork() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.nominations) > 0
}

func (p *Provisioner) nominatedClaim(pod *corev1.Pod) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.nominations[pod.UID]
	if ok && p.clock.Since(n.at) > p.opts.NominationTTL {
		delete(p.nominations, pod.UID)
		return "", false
	}
	return n.claim, ok
}

// createWorkers bounds the NodeClaims created at once.
const createWorkers = 50

// fillEvery is how often a window still open is planned early.
const fillEvery = 250 * time.Millisecond

// retryBase and retryMax bound the backoff between failed batches.
const (
	retryBase = time.Second
	retryMax  = time.Minute
)

// recheck is how soon pods waiting on NodeClaims are looked at again.
const recheck = 5 * time.Second

// nominationGrace is how long a nomination survives its NodeClaim's absence
// from the cache: a claim just created may not have reached it yet.
const nominationGrace = 30 * time.Second

// forgetNominations drops nominations to claims that are being deleted, or
// that are gone and were not created moments ago. It returns those whose
// node had initialized: kube-scheduler could have bound the pod there and
// did not.
func (p *Provisioner) forgetNominations(live map[string]*v1.NodeClaim) map[types.UID]nomination {
	p.mu.Lock()
	defer p.mu.Unlock()
	lost := map[types.UID]nomination{}
	for uid, n := range p.nominations {
		c, ok := live[n.claim]
		if (ok && c.DeletionTimestamp != nil) || (!ok && p.clock.Since(n.at) > nominationGrace) || (!ok && n.node != "") {
			delete(p.nominations, uid)
			if n.node != "" {
				lost[uid] = n
			}
		}
	}
	return lost
}

// initialized notes that the node of a pod's nominated claim has initialized.
func (p *Provisioner) initialized(pod *corev1.Pod, claim *v1.NodeClaim) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.nominations[pod.UID]; ok && n.node == "" {
		n.node, n.pool = claim.Status.NodeName, claim.Labels[v1.NodePoolLabelKey]
		p.nominations[pod.UID] = n
	}
}

// Metrics of provisioning, registered on the controller's registry.
type Metrics struct {
	batchPods     prometheus.Histogram
	duration      prometheus.Histogram
	durationV1    prometheus.Histogram
	fallbacks     *prometheus.CounterVec
	disagreements *prometheus.CounterVec
}

// NewMetrics creates and registers the provisioning metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		batchPods: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "backstop_provisioner_batch_pods", Help: "Pending pods planned together in one batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "karpenter_provisioner_scheduling_duration_seconds", Help: "Duration of one scheduling solve.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backstop_fallback_total", Help: "Pods planned again after their NodeClaim's launch ran out of capacity, by pool fallen from and to, and EC2 error code.",
		}, []string{"from_nodepool", "to_nodepool", "reason"}),
		disagreements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backstop_scheduler_disagreements_total",
			Help: "Pods kube-scheduler did not bind onto the initialized node planned for them, by NodePool; each backs the pod off.",
		}, []string{"nodepool"}),
	}
	// Karpenter v1 renamed the solve's histogram; both names are exported.
	m.durationV1 = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "karpenter_scheduler_scheduling_duration_seconds", Help: "Duration of one scheduling solve (Karpenter v1's name).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	})
	reg.MustRegister(m.batchPods, m.duration, m.durationV1, m.fallbacks, m.disagreements)
	return m
}

func (m *Metrics) observe(pods int, d time.Duration) {
	m.batchPods.Observe(float64(pods))
	m.duration.Observe(d.Seconds())
	m.durationV1.Observe(d.Seconds())
}
