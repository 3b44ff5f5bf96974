// Package static keeps each static NodePool (spec.replicas) at its count of
// nodes, whatever the pods: it creates NodeClaims while there are fewer,
// removes the surplus when the count goes down, and replaces drifted and
// expired nodes replacement first.
package static

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers"
	"github.com/backstop-sh/backstop/pkg/controllers/disruption"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/pkg/controllers/nodeclaim"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// Filler creates a static pool's NodeClaims (the provisioner).
type Filler interface {
	Fill(ctx context.Context, pool *v1.NodePool, n, live int) (provisioning.Filled, error)
}

// Reasons a static pool's NodeClaim is removed, in its DisruptionReason
// condition and events.
const (
	// ReasonScaledDown: spec.replicas went down.
	ReasonScaledDown = "ScaledDown"
	// ReasonExpired and ReasonDrifted: its replacement has initialized.
	ReasonExpired = "Expired"
	ReasonDrifted = "Drifted"
)

// errGone stops a removal: the NodeClaim is already being deleted.
var errGone = errors.New("already being deleted")

// Controller reconciles static NodePools.
type Controller struct {
	client client.Client
	// reader reads the pool's NodeClaims from the API server: a NodeClaim
	// just created must be counted, or the next reconcile creates it again.
	reader   client.Reader
	filler   Filler
	recorder events.EventRecorder
	clock    clock.Clock
	// Every is how often a static pool is looked at without an event:
	// expiry and the budgets' schedules are times, not events.
	Every time.Duration
	// Metrics counts removed NodeClaims; nil counts nothing.
	Metrics *metrics.Lifecycle

	mu sync.Mutex
	// short is what each pool was last said to be short of, so that a pool
	// that stays short is told once, not at every reconcile.
	short map[string]string
}

// New returns the controller.
func New(c client.Client, reader client.Reader, filler Filler, recorder events.EventRecorder, clk clock.Clock) *Controller {
	return &Controller{client: c, reader: reader, filler: filler, recorder: recorder, clock: clk, Every: time.Minute, short: map[string]string{}}
}

// Register adds the controller: a NodePool change, and any change of one
// of its NodeClaims, reconciles the pool.
func (c *Controller) Register(mgr manager.Manager) error {
	return builder.ControllerManagedBy(mgr).Named("nodepool.static").For(&v1.NodePool{}).WithOptions(controllers.Options()).
		Watches(&v1.NodeClaim{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if pool := o.GetLabels()[v1.NodePoolLabelKey]; pool != "" {
				return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: pool}}}
			}
			return nil
		})).
		Complete(c)
}

// members are a static pool's NodeClaims, sorted.
type members struct {
	// live are those not being deleted; fresh the live ones not retiring.
	live, fresh []*v1.NodeClaim
	// retiring are live ones to be replaced, with why (Drifted, Expired).
	retiring map[*v1.NodeClaim]string
	// ready counts the fresh ones initialized; deleting those being deleted.
	ready, deleting int
	// nextExpiry is when the next fresh NodeClaim expires (zero: none).
	nextExpiry time.Time
}

func sortMembers(claims []v1.NodeClaim, now time.Time) members {
	m := members{retiring: map[*v1.NodeClaim]string{}}
	for i := range claims {
		claim := &claims[i]
		if claim.DeletionTimestamp != nil {
			m.deleting++
			continue
		}
		m.live = append(m.live, claim)
		expires := time.Time{}
		if d := claim.Spec.ExpireAfter.Duration; d != nil {
			expires = claim.CreationTimestamp.Add(*d)
		}
		switch {
		case !expires.IsZero() && !now.Before(expires):
			m.retiring[claim] = ReasonExpired
		case meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionDrifted):
			m.retiring[claim] = ReasonDrifted
		default:
			m.fresh = append(m.fresh, claim)
			if meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionInitialized) {
				m.ready++
			}
			if !expires.IsZero() && (m.nextExpiry.IsZero() || expires.Before(m.nextExpiry)) {
				m.nextExpiry = expires
			}
		}
	}
	return m
}

// Reconcile brings a static pool to spec.replicas NodeClaims.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var pool v1.NodePool
	if err := c.client.Get(ctx, req.NamespacedName, &pool); err != nil || !pool.Static() || pool.DeletionTimestamp != nil {
		c.tellShort(ctx, &pool, req.Name, "")
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var list v1.NodeClaimList
	if err := c.reader.List(ctx, &list, client.MatchingLabels{v1.NodePoolLabelKey: pool.Name}); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing the nodeclaims of nodepool %s: %w", pool.Name, err)
	}
	now := c.clock.Now()
	m := sortMembers(list.Items, now)
	want := int(*pool.Spec.Replicas)
	room := math.MaxInt
	if q, ok := pool.Spec.Limits["nodes"]; ok {
		room = int(q.Value()) - len(m.live)
	}
	short := want - len(m.fresh)
	if short <= 0 {
		c.tellShort(ctx, &pool, pool.Name, "")
	} else {
		if err := c.fill(ctx, &pool, short, len(m.live)); err != nil {
			return reconcile.Result{}, err
		}
		if room < short && len(m.retiring) > 0 {
			// limits.nodes leaves no room to replace first: the old node
			// goes first, within the budgets, and its replacement follows.
			if err := c.retire(ctx, &pool, m, short-max(room, 0), now, "limits.nodes leaves no room to replace it first"); err != nil {
				return reconcile.Result{}, err
			}
		}
	}
	if len(m.retiring) > 0 && m.ready >= want {
		if err := c.retire(ctx, &pool, m, len(m.retiring), now, "its replacement has initialized"); err != nil {
			return reconcile.Result{}, err
		}
	}
	if extra := len(m.fresh) - want; extra > 0 {
		if err := c.scaleDown(ctx, &pool, m.fresh, extra); err != nil {
			return reconcile.Result{}, err
		}
	}
	after := c.Every
	if !m.nextExpiry.IsZero() {
		after = min(after, max(m.nextExpiry.Sub(now), time.Second))
	}
	return reconcile.Result{RequeueAfter: after}, nil
}

// fill creates short NodeClaims; what stops it is said on the pool.
func (c *Controller) fill(ctx context.Context, pool *v1.NodePool, short, live int) error {
	filled, err := c.filler.Fill(ctx, pool, short, live)
	if n := len(filled.Created); n > 0 {
		names := make([]string, 0, n)
		for _, claim := range filled.Created {
			names = append(names, claim.Name)
		}
		log.FromContext(ctx).Info("created nodeclaims of a static nodepool", "nodepool", pool.Name, "replicas", *pool.Spec.Replicas, "nodeclaims", names)
		c.recorder.Eventf(pool, nil, corev1.EventTypeNormal, "Provisioned", "Fill",
			"Created %d NodeClaim(s) to keep %d replicas: %s", n, *pool.Spec.Replicas, strings.Join(names, ", "))
	}
	if err != nil {
		return err
	}
	why := ""
	if filled.Short != "" && len(filled.Created) < short {
		why = fmt.Sprintf("%d of %d replicas cannot be created: %s", short-len(filled.Created), *pool.Spec.Replicas, filled.Short)
	}
	c.tellShort(ctx, pool, pool.Name, why)
	return nil
}

// tellShort says on the pool why replicas are missing ("": none are), once
// per reason.
func (c *Controller) tellShort(ctx context.Context, pool *v1.NodePool, name, why string) {
	c.mu.Lock()
	said := c.short[name]
	if why == "" {
		delete(c.short, name)
	} else {
		c.short[name] = why
	}
	c.mu.Unlock()
	if why != "" && why != said {
		log.FromContext(ctx).Info("static nodepool short of replicas", "nodepool", name, "why", why)
		c.recorder.Eventf(pool, nil, corev1.EventTypeWarning, "ReplicasShort", "Fill", "%s", why)
	}
}

// retire removes up to n retiring NodeClaims, saying why now: expired ones
// whatever the budgets (expiry is forceful, as in Karpenter), drifted ones
// within the pool's Drifted budgets and when nothing blocks a voluntary
// disruption.
func (c *Controller) retire(ctx context.Context, pool *v1.NodePool, m members, n int, now time.Time, why string) error {
	retiring := make([]*v1.NodeClaim, 0, len(m.retiring))
	for claim := range m.retiring {
		retiring = append(retiring, claim)
	}
	// Expired first, then the oldest.
	sort.Slice(retiring, func(a, b int) bool {
		ea, eb := m.retiring[retiring[a]] == ReasonExpired, m.retiring[retiring[b]] == ReasonExpired
		if ea != eb {
			return ea
		}
		return retiring[a].CreationTimestamp.Before(&retiring[b].CreationTimestamp)
	})
	allowed, err := disruption.Allowed(pool, v1.DisruptionReasonDrifted, len(m.live)+m.deleting, now)
	if err != nil {
		log.FromContext(ctx).Error(err, "reading disruption budgets", "nodepool", pool.Name)
		allowed = 0
	}
	allowed -= m.deleting
	var pdbs policyv1.PodDisruptionBudgetList
	pdbsRead := false
	for _, claim := range retiring {
		if n <= 0 {
			break
		}
		reason := m.retiring[claim]
		if reason == ReasonDrifted {
			if allowed <= 0 {
				continue
			}
			if !pdbsRead {
				if err := c.client.List(ctx, &pdbs); err != nil {
					return fmt.Errorf("listing poddisruptionbudgets: %w", err)
				}
				pdbsRead = true
			}
			cand, err := c.candidate(ctx, claim)
			if err != nil {
				return err
			}
			if why := disruption.WhyNot(cand, pdbs.Items, now); why != nil {
				log.FromContext(ctx).V(1).Info("not replacing drifted node of a static nodepool yet", "nodeclaim", claim.Name, "why", why.String())
				continue
			}
			allowed--
		}
		message := why
		if reason == ReasonDrifted {
			if cond := meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionDrifted); cond != nil {
				message = cond.Reason + "; " + message
			}
		} else {
			message = fmt.Sprintf("NodeClaim is older than expireAfter %s; ", claim.Spec.ExpireAfter.String()) + message
		}
		if err := c.remove(ctx, claim, reason, message); err != nil {
			return err
		}
		n--
	}
	return nil
}

// scaleDown removes n of the fresh NodeClaims: those not launched first,
// then those without a node, then those with the fewest pods that must
// move, pods that may not be disrupted counting as many.
func (c *Controller) scaleDown(ctx context.Context, pool *v1.NodePool, fresh []*v1.NodeClaim, n int) error {
	cost := map[*v1.NodeClaim]int{}
	now := c.clock.Now()
	for _, claim := range fresh {
		switch {
		case claim.Status.ProviderID == "":
			cost[claim] = -2
		case claim.Status.NodeName == "":
			cost[claim] = -1
		default:
			cand, err := c.candidate(ctx, claim)
			if err != nil {
				return err
			}
			for _, pod := range cand.Pods {
				if pod.DeletionTimestamp != nil || !scheduling.MustLeave(pod) {
					continue
				}
				if protected, _ := scheduling.DoNotDisrupt(pod, now); protected {
					cost[claim] += 1000
				} else {
					cost[claim]++
				}
			}
		}
	}
	order := append([]*v1.NodeClaim(nil), fresh...)
	sort.SliceStable(order, func(a, b int) bool {
		if cost[order[a]] != cost[order[b]] {
			return cost[order[a]] < cost[order[b]]
		}
		// The newest first among equals: the oldest have proven themselves.
		return order[b].CreationTimestamp.Before(&order[a].CreationTimestamp)
	})
	for _, claim := range order[:n] {
		if err := c.remove(ctx, claim, ReasonScaledDown, fmt.Sprintf("NodePool %s has %d replicas", pool.Name, *pool.Spec.Replicas)); err != nil {
			return err
		}
	}
	return nil
}

// candidate is the NodeClaim with its Node and pods, from the cache.
func (c *Controller) candidate(ctx context.Context, claim *v1.NodeClaim) (disruption.Candidate, error) {
	cand := disruption.Candidate{Claim: claim}
	if claim.Status.NodeName == "" {
		return cand, nil
	}
	var node corev1.Node
	if err := c.client.Get(ctx, client.ObjectKey{Name: claim.Status.NodeName}, &node); err != nil {
		return cand, client.IgnoreNotFound(err)
	}
	cand.Node = &node
	var pods corev1.PodList
	if err := c.client.List(ctx, &pods, client.MatchingFields{nodeclaim.NodeNameIndex: node.Name}); err != nil {
		return cand, fmt.Errorf("listing the pods of node %s: %w", node.Name, err)
	}
	for i := range pods.Items {
		cand.Pods = append(cand.Pods, &pods.Items[i])
	}
	return cand, nil
}

// remove records why the NodeClaim goes and deletes it; the termination
// controller drains and terminates it.
// A NodeClaim changed meanwhile (its launch or registration) is read again.
func (c *Controller) remove(ctx context.Context, claim *v1.NodeClaim, reason, message string) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		err := disruption.MarkDisrupted(ctx, c.client, claim, reason, message, c.clock.Now())
		if apierrors.IsConflict(err) {
			fresh := &v1.NodeClaim{}
			if err := c.reader.Get(ctx, client.ObjectKeyFromObject(claim), fresh); err != nil {
				return err
			}
			if fresh.DeletionTimestamp != nil {
				return errGone
			}
			claim = fresh
		}
		return err
	})
	if errors.Is(err, errGone) {
		return nil
	}
	if err != nil {
		return client.IgnoreNotFound(err)
	}
	if err := c.client.Delete(ctx, claim); err != nil {
		return client.IgnoreNotFound(err)
	}
	log.FromContext(ctx).Info("disrupting node of a static nodepool", "nodeclaim", claim.Name, "node", claim.Status.NodeName, "reason", reason, "why", message)
	c.recorder.Eventf(claim, nil, corev1.EventTypeNormal, "Disrupting", "Disrupt", "%s: %s", reason, message)
	c.Metrics.Disrupted(claim.Labels[v1.NodePoolLabelKey], strings.ToLower(reason), claim.Labels[v1.CapacityTypeLabelKey])
	return nil
}
