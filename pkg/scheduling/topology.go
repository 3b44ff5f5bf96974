package scheduling

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// group counts the pods matching one selector, in some namespaces, per domain of
// one topology key. Spread constraints, pod affinity and pod anti-affinity that
// select the same pods over the same key share a group.
type group struct {
	key        string
	namespaces map[string]bool // nil with allNS or nsSelector
	allNS      bool
	nsSelector labels.Selector
	selector   labels.Selector

	// counts of member pods; by target id for the hostname key, by label value otherwise.
	byTarget []int32
	byDomain map[string]int32
	total    int32
	// allByTarget counts members per target for other keys too, for spread
	// constraints that count only nodes matching the pod's node affinity.
	allByTarget []int32
	// owners counts, per domain, the pods whose required anti-affinity uses this
	// group: a pod matching the selector may not join them (anti-affinity is symmetric).
	ownersByTarget []int32
	ownersByDomain map[string]int32
	ownersTotal    int32
}

func (g *group) hostname() bool { return g.key == hostnameKey }

func (g *group) matchesNamespace(ns string, nsLabels map[string]map[string]string) bool {
	switch {
	case g.allNS:
		return true
	case g.nsSelector != nil:
		return g.nsSelector.Matches(labels.Set(nsLabels[ns])) || g.namespaces[ns]
	default:
		return g.namespaces[ns]
	}
}

func (g *group) count(d domain) int32 {
	if g.hostname() {
		if d.target < len(g.byTarget) {
			return g.byTarget[d.target]
		}
		return 0
	}
	return g.byDomain[d.value]
}

func (g *group) owners(d domain) int32 {
	if g.hostname() {
		if d.target < len(g.ownersByTarget) {
			return g.ownersByTarget[d.target]
		}
		return 0
	}
	return g.ownersByDomain[d.value]
}

func grow(s []int32, i int) []int32 {
	for len(s) <= i {
		s = append(s, 0)
	}
	return s
}

func (g *group) record(d domain, member, owner bool) {
	if member && !g.hostname() {
		g.allByTarget = grow(g.allByTarget, d.target)
		g.allByTarget[d.target]++
	}
	if g.hostname() {
		if member {
			g.byTarget = grow(g.byTarget, d.target)
			g.byTarget[d.target]++
		}
		if owner {
			g.ownersByTarget = grow(g.ownersByTarget, d.target)
			g.ownersByTarget[d.target]++
		}
	} else {
		if member {
			g.byDomain[d.value]++
		}
		if owner {
			g.ownersByDomain[d.value]++
		}
	}
	if member {
		g.total++
	}
	if owner {
		g.ownersTotal++
	}
}

// domain is where a target sits for one topology key: a target id for the
// hostname key, a label value otherwise.
type domain struct {
	target int
	value  string
}

type constraintKind uint8

const (
	spreadConstraint constraintKind = iota
	affinityConstraint
	antiAffinityConstraint
	// symmetricAntiAffinity: another pod's required anti-affinity selects this pod.
	symmetricAntiAffinity
)

func (k constraintKind) String() string {
	return [...]string{"topology spread", "pod affinity", "pod anti-affinity", "pod anti-affinity of other pods"}[k]
}

// constraint is one pod's use of a group.
type constraint struct {
	kind       constraintKind
	g          *group
	maxSkew    int32
	minDomains int32
	// selfMatch: the owning pod matches the group's selector itself.
	selfMatch bool
	// honorAffinity: only domains the pod's node affinity allows count (nodeAffinityPolicy Honor).
	honorAffinity bool
	// honorTaints: only nodes whose taints the pod tolerates count (nodeTaintsPolicy Honor).
	honorTaints bool
	tolerations []corev1.Toleration
	// filtered: only some nodes count (the pod's node affinity names keys
	// besides the topology key, or taints are honoured), so counts are per node.
	filtered bool
	// eligible are the domains the constraint counts, once worked out.
	eligible map[string]bool
}

// topology builds and holds the groups of one solve.
type topology struct {
	groups   map[string]*group
	ordered  []*group
	nsLabels map[string]map[string]string
}

func newTopology(nsLabels map[string]map[string]string) *topology {
	return &topology{groups: map[string]*group{}, nsLabels: nsLabels}
}

// groupFor returns the group for a key, namespaces and selector, creating it once.
func (t *topology) groupFor(key string, namespaces []string, allNS bool, nsSel labels.Selector, sel labels.Selector) *group {
	sort.Strings(namespaces)
	nsKey := strings.Join(namespaces, ",")
	if allNS {
		nsKey = "*"
	}
	if nsSel != nil {
		nsKey += "|" + nsSel.String()
	}
	id := key + "\x00" + nsKey + "\x00" + sel.String()
	if g, ok := t.groups[id]; ok {
		return g
	}
	g := &group{key: key, allNS: allNS, nsSelector: nsSel, selector: sel, byDomain: map[string]int32{}, ownersByDomain: map[string]int32{}}
	if !allNS {
		g.namespaces = map[string]bool{}
		for _, ns := range namespaces {
			g.namespaces[ns] = true
		}
	}
	t.groups[id] = g
	t.ordered = append(t.ordered, g)
	return g
}

// affinityTermGroup resolves the namespaces of a pod (anti-)affinity term.
func (t *topology) affinityTermGroup(pod *corev1.Pod, term *corev1.PodAffinityTerm) (*group, error) {
	sel, err := selectorFor(term.LabelSelector, pod.Labels, term.MatchLabelKeys, term.MismatchLabelKeys)
	if err != nil {
		return nil, fmt.Errorf("label selector: %w", err)
	}
	namespaces := append([]string(nil), term.Namespaces...)
	var nsSel labels.Selector
	allNS := false
	if term.NamespaceSelector != nil {
		if len(term.NamespaceSelector.MatchLabels) == 0 && len(term.NamespaceSelector.MatchExpressions) == 0 {
			allNS = true
		} else if nsSel, err = metav1.LabelSelectorAsSelector(term.NamespaceSelector); err != nil {
			return nil, fmt.Errorf("namespace selector: %w", err)
		}
	}
	if !allNS && nsSel == nil && len(namespaces) == 0 {
		namespaces = []string{pod.Namespace}
	}
	return t.groupFor(term.TopologyKey, namespaces, allNS, nsSel, sel), nil
}

// addConstraints digests the pod's spread constraints and pod (anti-)affinity
// into required constraints and preferences.
func (t *topology) addConstraints(pi *podInfo, policy PreferencePolicy) error {
	pod := pi.pod
	for i := range pod.Spec.TopologySpreadConstraints {
		tsc := &pod.Spec.TopologySpreadConstraints[i]
		sel, err := selectorFor(tsc.LabelSelector, pod.Labels, tsc.MatchLabelKeys, nil)
		if err != nil {
			return fmt.Errorf("topology spread constraint %s: %w", tsc.TopologyKey, err)
		}
		c := &constraint{
			kind: spreadConstraint, g: t.groupFor(tsc.TopologyKey, []string{pod.Namespace}, false, nil, sel),
			maxSkew: tsc.MaxSkew, honorAffinity: tsc.NodeAffinityPolicy == nil || *tsc.NodeAffinityPolicy == corev1.NodeInclusionPolicyHonor,
			honorTaints: tsc.NodeTaintsPolicy != nil && *tsc.NodeTaintsPolicy == corev1.NodeInclusionPolicyHonor,
			tolerations: pod.Spec.Tolerations,
		}
		if tsc.MinDomains != nil {
			c.minDomains = *tsc.MinDomains
		}
		if tsc.WhenUnsatisfiable == corev1.ScheduleAnyway {
			if policy != PreferencesIgnore {
				pi.prefs = append(pi.prefs, &preference{weight: 0, constraint: c})
			}
			continue
		}
		pi.required = append(pi.required, c)
	}
	aff := pod.Spec.Affinity
	if aff == nil {
		return nil
	}
	addTerms := func(kind constraintKind, required []corev1.PodAffinityTerm, preferred []corev1.WeightedPodAffinityTerm) error {
		for i := range required {
			g, err := t.affinityTermGroup(pod, &required[i])
			if err != nil {
				return fmt.Errorf("%s: %w", kind, err)
			}
			pi.required = append(pi.required, &constraint{kind: kind, g: g})
			if kind == antiAffinityConstraint {
				pi.owns = append(pi.owns, g)
			}
		}
		if policy == PreferencesIgnore {
			return nil
		}
		for i := range preferred {
			g, err := t.affinityTermGroup(pod, &preferred[i].PodAffinityTerm)
			if err != nil {
				return fmt.Errorf("preferred %s: %w", kind, err)
			}
			pi.prefs = append(pi.prefs, &preference{weight: preferred[i].Weight, constraint: &constraint{kind: kind, g: g}})
		}
		return nil
	}
	if a := aff.PodAffinity; a != nil {
		if err := addTerms(affinityConstraint, a.RequiredDuringSchedulingIgnoredDuringExecution, a.PreferredDuringSchedulingIgnoredDuringExecution); err != nil {
			return err
		}
	}
	if a := aff.PodAntiAffinity; a != nil {
		if err := addTerms(antiAffinityConstraint, a.RequiredDuringSchedulingIgnoredDuringExecution, a.PreferredDuringSchedulingIgnoredDuringExecution); err != nil {
			return err
		}
	}
	return nil
}

// memberships finds the groups a pod belongs to and marks self-matching constraints.
func (t *topology) memberships(pi *podInfo) {
	pi.memberOf = t.matching(pi.pod)
	for _, c := range pi.required {
		c.selfMatch = containsGroup(pi.memberOf, c.g)
	}
	for _, p := range pi.prefs {
		if p.constraint != nil {
			p.constraint.selfMatch = containsGroup(pi.memberOf, p.constraint.g)
		}
	}
}

func (t *topology) matching(pod *corev1.Pod) []*group {
	var out []*group
	set := labels.Set(pod.Labels)
	for _, g := range t.ordered {
		if g.matchesNamespace(pod.Namespace, t.nsLabels) && g.selector.Matches(set) {
			out = append(out, g)
		}
	}
	return out
}

func containsGroup(gs []*group, g *group) bool {
	for _, x := range gs {
		if x == g {
			return true
		}
	}
	return false
}
