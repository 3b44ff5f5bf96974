package disruption

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// DoNotDisruptAnnotation on a pod, Node or NodeClaim keeps voluntary
// disruption away from its node, as in Karpenter.
const DoNotDisruptAnnotation = v1.DoNotDisruptAnnotation

// Blocker is why a node may not be disrupted voluntarily now.
type Blocker string

// The blockers.
const (
	BlockedNotInitialized    Blocker = "NotInitialized"
	BlockedDeleting          Blocker = "Deleting"
	BlockedInterrupted       Blocker = "Interrupted"
	BlockedInProgress        Blocker = "InProgress"
	BlockedDoNotDisrupt      Blocker = "DoNotDisrupt"
	BlockedPodDoNotDisrupt   Blocker = "PodDoNotDisrupt"
	BlockedPodNoController   Blocker = "PodWithoutController"
	BlockedPDB               Blocker = "PodDisruptionBudget"
	BlockedNodeNotRegistered Blocker = "NotRegistered"
)

// Blocked is a Blocker with what it is about; printed once, for events and logs.
type Blocked struct {
	Blocker Blocker
	// Object names the pod, PDB or node concerned.
	Object string
}

// worthTelling is a blocker the user put there (an annotation, a bare
// pod, a budget), which a DisruptionBlocked event names; the others pass
// by themselves.
func (b *Blocked) worthTelling() bool {
	switch b.Blocker {
	case BlockedDoNotDisrupt, BlockedPodDoNotDisrupt, BlockedPodNoController, BlockedPDB:
		return true
	}
	return false
}

func (b *Blocked) String() string {
	switch b.Blocker {
	case BlockedNotInitialized:
		return "its node has not initialized"
	case BlockedNodeNotRegistered:
		return "its node has not registered"
	case BlockedDeleting:
		return "it is being deleted"
	case BlockedInterrupted:
		return "it is being replaced after an interruption notice"
	case BlockedInProgress:
		return "it is already being replaced"
	case BlockedDoNotDisrupt:
		return fmt.Sprintf("%s carries %s", b.Object, DoNotDisruptAnnotation)
	case BlockedPodDoNotDisrupt:
		return fmt.Sprintf("pod %s carries %s", b.Object, DoNotDisruptAnnotation)
	case BlockedPodNoController:
		return fmt.Sprintf("pod %s has no controller to recreate it elsewhere", b.Object)
	case BlockedPDB:
		return fmt.Sprintf("PodDisruptionBudget %s allows no disruption now", b.Object)
	}
	return string(b.Blocker)
}

// Candidate is a NodeClaim with its Node and the pods on it.
type Candidate struct {
	Claim *v1.NodeClaim
	Node  *corev1.Node
	Pods  []*corev1.Pod
}

// WhyNot says why a candidate may not be disrupted voluntarily at now, or
// nil when it may. pdbs are the cluster's PodDisruptionBudgets.
func WhyNot(c Candidate, pdbs []policyv1.PodDisruptionBudget, now time.Time) *Blocked {
	claim := c.Claim
	switch {
	case claim.DeletionTimestamp != nil:
		return &Blocked{Blocker: BlockedDeleting}
	case claim.Annotations[v1.InterruptedAnnotation] != "":
		return &Blocked{Blocker: BlockedInterrupted}
	case claim.Annotations[ReplacingAnnotation] != "":
		return &Blocked{Blocker: BlockedInProgress}
	case c.Node == nil || claim.Status.NodeName == "":
		return &Blocked{Blocker: BlockedNodeNotRegistered}
	case !meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionInitialized):
		return &Blocked{Blocker: BlockedNotInitialized}
	case claim.Annotations[DoNotDisruptAnnotation] == "true":
		return &Blocked{Blocker: BlockedDoNotDisrupt, Object: "nodeclaim " + claim.Name}
	case c.Node.Annotations[DoNotDisruptAnnotation] == "true":
		return &Blocked{Blocker: BlockedDoNotDisrupt, Object: "node " + c.Node.Name}
	}
	for _, pod := range c.Pods {
		if pod.DeletionTimestamp != nil || !scheduling.MustLeave(pod) {
			continue
		}
		name := pod.Namespace + "/" + pod.Name
		// A value that does not parse protects nothing; the Replacer and
		// the drain report it.
		if protected, _ := scheduling.DoNotDisrupt(pod, now); protected {
			return &Blocked{Blocker: BlockedPodDoNotDisrupt, Object: name}
		}
		if metav1.GetControllerOf(pod) == nil {
			return &Blocked{Blocker: BlockedPodNoController, Object: name}
		}
		if pdb := blockingPDB(pod, pdbs); pdb != nil {
			return &Blocked{Blocker: BlockedPDB, Object: pdb.Namespace + "/" + pdb.Name}
		}
	}
	return nil
}

// notices remember what was last said of each object, so that rounds
// repeat nothing: a blocked node is told once per blocker, a bad
// annotation once per value.
type notices struct{ said map[string]string }

// tell runs say unless msg is what was last said of key.
func (n *notices) tell(key, msg string, say func()) {
	if n.said == nil {
		n.said = map[string]string{}
	}
	if n.said[key] == msg {
		return
	}
	n.said[key] = msg
	say()
}

// forget lets key be told again, its blocker gone.
func (n *notices) forget(key string) { delete(n.said, key) }

// keep forgets every key not live.
func (n *notices) keep(live map[string]bool) {
	for k := range n.said {
		if !live[k] {
			delete(n.said, k)
		}
	}
}

// whyNot is WhyNot, told: a node a disruption method wants but may not
// touch gets a DisruptionBlocked event on its NodeClaim and Node naming
// what blocks it, once per blocker; a pod whose do-not-disrupt value does
// not parse gets InvalidDoNotDisruptAnnotation, once per value.
func (r *Replacer) whyNot(w *world, c Candidate, now time.Time) *Blocked {
	for _, pod := range c.Pods {
		if _, err := scheduling.DoNotDisrupt(pod, now); err != nil {
			r.told.tell("pod/"+string(pod.UID), err.Error(), func() {
				r.recorder.Eventf(pod, nil, corev1.EventTypeWarning, "InvalidDoNotDisruptAnnotation", "Disrupt", "%v", err)
			})
		}
	}
	why := WhyNot(c, w.pdbs, now)
	key := "nodeclaim/" + c.Claim.Name
	if why == nil {
		r.told.forget(key)
		return nil
	}
	if why.worthTelling() {
		msg := "Cannot disrupt node: " + why.String()
		r.told.tell(key, msg, func() {
			r.recorder.Eventf(c.Claim, nil, corev1.EventTypeNormal, "DisruptionBlocked", "Disrupt", "%s", msg)
			if c.Node != nil {
				r.recorder.Eventf(c.Node, c.Claim, corev1.EventTypeNormal, "DisruptionBlocked", "Disrupt", "%s", msg)
			}
		})
	}
	return why
}

// keepNotices forgets what was said of objects no longer in the world.
func (r *Replacer) keepNotices(w *world) {
	live := map[string]bool{}
	for _, c := range w.claims {
		live["nodeclaim/"+c.Name] = true
	}
	for _, pods := range w.pods {
		for _, p := range pods {
			live["pod/"+string(p.UID)] = true
		}
	}
	r.told.keep(live)
}

// blockingPDB is a budget selecting the pod that allows no disruption now.
func blockingPDB(pod *corev1.Pod, pdbs []policyv1.PodDisruptionBudget) *policyv1.PodDisruptionBudget {
	for i := range pdbs {
		pdb := &pdbs[i]
		if pdb.Namespace != pod.Namespace || pdb.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		// In policy/v1 an empty selector selects every pod of the namespace.
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		if pdb.Status.DisruptionsAllowed <= 0 {
			return pdb
		}
	}
	return nil
}
