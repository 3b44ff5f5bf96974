package scheduling

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	v1 "github.com/backstop-sh/backstop/apis/v1"
)

const (
	capacityTypeKey = v1.CapacityTypeLabelKey
	zoneKey         = corev1.LabelTopologyZone
	hostnameKey     = corev1.LabelHostname
)

// podInfo is a pod digested once per solve: what it needs, where it may go,
// and which topology groups it belongs to.
type podInfo struct {
	pod      *corev1.Pod
	requests Resources
	// terms are the alternatives of required node affinity (ORed), each ANDed
	// with the nodeSelector. There is always at least one.
	terms       []Requirements
	tolerations []corev1.Toleration
	hostPorts   []hostPort
	// required topology constraints; prefs are relaxable.
	required []*constraint
	prefs    []*preference
	// memberOf lists the groups whose selector matches this pod.
	memberOf []*group
	// owns lists the groups of the pod's required anti-affinity terms, which
	// other pods must respect too.
	owns []*group
	// err is set when the pod's spec cannot be understood.
	err error
}

// preference is one relaxable wish: a preferred node-affinity term, a preferred
// pod (anti-)affinity term, or a ScheduleAnyway spread constraint.
type preference struct {
	weight     int32
	nodeReqs   Requirements
	constraint *constraint
}

type hostPort struct {
	ip       string
	port     int32
	protocol corev1.Protocol
}

func (a hostPort) conflicts(b hostPort) bool {
	if a.port != b.port || a.protocol != b.protocol {
		return false
	}
	any := func(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
	return a.ip == b.ip || any(a.ip) || any(b.ip)
}

func podHostPorts(pod *corev1.Pod) []hostPort {
	var out []hostPort
	add := func(cs []corev1.Container) {
		for i := range cs {
			for _, p := range cs[i].Ports {
				if p.HostPort > 0 {
					proto := p.Protocol
					if proto == "" {
						proto = corev1.ProtocolTCP
					}
					out = append(out, hostPort{ip: p.HostIP, port: p.HostPort, protocol: proto})
				}
			}
		}
	}
	add(pod.Spec.Containers)
	add(pod.Spec.InitContainers)
	return out
}

// FollowsNode reports whether a pod belongs to its node rather than needing
// one: DaemonSet pods and mirror (static) pods. They are never provisioned
// for, drained, or counted against a node being empty.
func FollowsNode(pod *corev1.Pod) bool {
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return true
	}
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "DaemonSet" || ref.Kind == "Node" {
			return true
		}
	}
	return false
}

// MustLeave reports whether a pod leaves a drained node: not DaemonSet or
// mirror pods, not finished pods, not pods that tolerate the disrupted taint.
func MustLeave(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	if FollowsNode(pod) {
		return false
	}
	taint := v1.DisruptedNoScheduleTaint
	for _, tol := range pod.Spec.Tolerations {
		if tol.ToleratesTaint(klog.Background(), &taint, false) {
			return false
		}
	}
	return true
}

// TerminationGrace is how long a pod is given to stop: the grace period of
// its deletion, else of its spec, else Kubernetes' 30 s.
func TerminationGrace(pod *corev1.Pod) time.Duration {
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// DoNotDisrupt reports whether a pod's karpenter.sh/do-not-disrupt
// annotation protects it at now: "true" always; a duration in Go's syntax
// ("4h", "1h30m") until the pod has run that long since it started (a pod
// not started yet is protected). "false" protects nothing; any other value
// protects nothing either and is returned as an error naming the fix.
func DoNotDisrupt(pod *corev1.Pod, now time.Time) (bool, error) {
	value, ok := pod.Annotations[v1.DoNotDisruptAnnotation]
	switch {
	case !ok || value == "false":
		return false, nil
	case value == "true":
		return true, nil
	}
	d, err := time.ParseDuration(value)
	if err != nil || d <= 0 {
		return false, fmt.Errorf("pod %s/%s: annotation %s=%q protects nothing: use \"true\", or how long after the pod starts it is protected, such as \"4h\"",
			pod.Namespace, pod.Name, v1.DoNotDisruptAnnotation, value)
	}
	if pod.Status.StartTime == nil {
		return true, nil
	}
	return now.Sub(pod.Status.StartTime.Time) < d, nil
}

// RunsOn reports whether a DaemonSet pod would run on a node with these
// labels and taints: it tolerates the taints that keep pods off, and one of
// its node-affinity terms matches the labels.
func RunsOn(ds *corev1.Pod, labels map[string]string, taints []corev1.Taint) bool {
	if ok, _ := tolerates(ds.Spec.Tolerations, taints); !ok {
		return false
	}
	terms, err := nodeTerms(ds)
	if err != nil {
		return false
	}
	for _, t := range terms {
		if t.MatchesLabels(labels) {
			return true
		}
	}
	return false
}

// nodeTerms builds the pod's required node-affinity alternatives.
func nodeTerms(pod *corev1.Pod) ([]Requirements, error) {
	base := FromLabels(pod.Spec.NodeSelector)
	aff := pod.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return []Requirements{base}, nil
	}
	var terms []Requirements
	for _, term := range aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		reqs, err := FromNodeSelector(term.MatchExpressions)
		if err != nil {
			return nil, fmt.Errorf("node affinity: %w", err)
		}
		for _, f := range term.MatchFields {
			// metadata.name is the only field; a new node's name is unknown, so
			// such a term can only match an existing node by hostname.
			r, err := NewRequirement(hostnameKey, v1.NodeSelectorOperator(f.Operator), f.Values...)
			if err != nil {
				return nil, fmt.Errorf("node affinity field %s: %w", f.Key, err)
			}
			reqs.Add(r)
		}
		reqs.Merge(base)
		terms = append(terms, reqs)
	}
	if len(terms) == 0 {
		// An empty list of terms matches no node.
		return nil, fmt.Errorf("node affinity has no terms, so it matches no node")
	}
	return terms, nil
}

// tolerates reports whether the tolerations admit every taint that repels pods.
func tolerates(tolerations []corev1.Toleration, taints []corev1.Taint) (bool, *corev1.Taint) {
	for i := range taints {
		t := &taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		ok := false
		for j := range tolerations {
			if toleratesTaint(&tolerations[j], t) {
				ok = true
				break
			}
		}
		if !ok {
			return false, t
		}
	}
	return true, nil
}

func toleratesTaint(tol *corev1.Toleration, taint *corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != taint.Effect {
		return false
	}
	if tol.Key != "" && tol.Key != taint.Key {
		return false
	}
	switch tol.Operator {
	case corev1.TolerationOpExists:
		return true
	case "", corev1.TolerationOpEqual:
		return tol.Key != "" && tol.Value == taint.Value
	default:
		return false
	}
}

// HasTaint reports whether taints hold one of the same key and effect.
func HasTaint(taints []corev1.Taint, taint corev1.Taint) bool {
	for i := range taints {
		if taints[i].MatchTaint(&taint) {
			return true
		}
	}
	return false
}

func taintString(t *corev1.Taint) string {
	if t.Value == "" {
		return fmt.Sprintf("%s:%s", t.Key, t.Effect)
	}
	return fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect)
}

// selectorFor builds a label selector, adding the owner's values of matchLabelKeys
// (and excluding its values of mismatchLabelKeys).
func selectorFor(sel *metav1.LabelSelector, owner map[string]string, matchKeys, mismatchKeys []string) (labels.Selector, error) {
	if sel == nil {
		// A nil selector matches nothing.
		return labels.Nothing(), nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, err
	}
	for _, k := range matchKeys {
		if v, ok := owner[k]; ok {
			r, err := labels.NewRequirement(k, "=", []string{v})
			if err != nil {
				return nil, err
			}
			s = s.Add(*r)
		}
	}
	for _, k := range mismatchKeys {
		if v, ok := owner[k]; ok {
			r, err := labels.NewRequirement(k, "!=", []string{v})
			if err != nil {
				return nil, err
			}
			s = s.Add(*r)
		}
	}
	return s, nil
}

// byWeight sorts preferences heaviest first, stably.
func byWeight(prefs []*preference) []*preference {
	out := append([]*preference(nil), prefs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].weight > out[j].weight })
	return out
}
