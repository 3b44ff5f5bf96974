package scheduling

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/backstop-sh/backstop/apis/v1"
)

// Requirements constrain several label keys at once, keyed by label key. A key
// that is not listed is unconstrained.
type Requirements map[string]*Requirement

// NewRequirements intersects the given requirements by key.
func NewRequirements(reqs ...*Requirement) Requirements {
	out := Requirements{}
	for _, r := range reqs {
		out.Add(r)
	}
	return out
}

// FromAPI converts API requirements, reporting the first invalid one.
func FromAPI(reqs []v1.NodeSelectorRequirementWithMinValues) (Requirements, error) {
	out := Requirements{}
	for _, r := range reqs {
		req, err := NewRequirement(r.Key, r.Operator, r.Values...)
		if err != nil {
			return nil, err
		}
		req.MinValues = r.MinValues
		out.Add(req)
	}
	return out, nil
}

// FromNodeSelector converts one term of a pod's node affinity.
func FromNodeSelector(reqs []corev1.NodeSelectorRequirement) (Requirements, error) {
	out := Requirements{}
	for _, r := range reqs {
		req, err := NewRequirement(r.Key, v1.NodeSelectorOperator(r.Operator), r.Values...)
		if err != nil {
			return nil, err
		}
		out.Add(req)
	}
	return out, nil
}

// FromLabels requires each label to have exactly its value.
func FromLabels(labels map[string]string) Requirements {
	out := Requirements{}
	for k, v := range labels {
		out.Add(MustRequirement(k, v1.OpIn, v))
	}
	return out
}

// Add intersects r into the set.
func (rs Requirements) Add(r *Requirement) {
	if existing, ok := rs[r.Key]; ok {
		r = existing.Intersect(r)
	}
	rs[r.Key] = r
}

// Merge intersects every requirement of o into the set.
func (rs Requirements) Merge(o Requirements) {
	for _, r := range o {
		rs.Add(r)
	}
}

// Clone copies the set; requirements are never changed in place, so they are shared.
func (rs Requirements) Clone() Requirements {
	out := make(Requirements, len(rs))
	for k, r := range rs {
		out[k] = r
	}
	return out
}

// HasMinValues reports whether any requirement asks for a minimum number of values.
func (rs Requirements) HasMinValues() bool {
	for _, r := range rs {
		if r.MinValues != nil {
			return true
		}
	}
	return false
}

// Intersect returns the requirements both sets impose.
func (rs Requirements) Intersect(o Requirements) Requirements {
	out := rs.Clone()
	out.Merge(o)
	return out
}

// Keys returns the constrained keys, sorted.
func (rs Requirements) Keys() []string {
	keys := make([]string, 0, len(rs))
	for k := range rs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Intersects reports an error naming the first key on which the two sets
// admit no common value. Keys constrained by only one side are fine.
func (rs Requirements) Intersects(o Requirements) error {
	for k, a := range rs {
		if b, ok := o[k]; ok && a.Intersect(b).IsEmpty() {
			return fmt.Errorf("%s: %s does not meet %s", k, describe(a), describe(b))
		}
	}
	return nil
}

// MatchesLabels reports whether a node with these labels satisfies every requirement.
func (rs Requirements) MatchesLabels(labels map[string]string) bool {
	for k, r := range rs {
		v, ok := labels[k]
		if !r.Matches(v, ok) {
			return false
		}
	}
	return true
}

// Labels returns the labels a node meeting rs must carry: every key whose
// allowed present values are exactly one, and absence is not allowed.
func (rs Requirements) Labels() map[string]string {
	out := map[string]string{}
	for k, r := range rs {
		if r.Finite() && len(r.values) == 1 && !r.absent {
			out[k] = r.values[0]
		}
	}
	return out
}

// String is canonical: equal sets print equally.
func (rs Requirements) String() string {
	parts := make([]string, 0, len(rs))
	for _, k := range rs.Keys() {
		parts = append(parts, rs[k].String())
	}
	return strings.Join(parts, "; ")
}

// ToAPI renders the set as API requirements, sorted by key.
func (rs Requirements) ToAPI() []v1.NodeSelectorRequirementWithMinValues {
	var out []v1.NodeSelectorRequirementWithMinValues
	for _, k := range rs.Keys() {
		out = append(out, rs[k].NodeSelectorRequirements()...)
	}
	return out
}

// describe says in words which values a requirement allows, for reasons.
func describe(r *Requirement) string {
	switch {
	case r.IsEmpty():
		return "nothing"
	case !r.complement && len(r.values) == 0:
		return "no label"
	case !r.complement:
		vals := r.values
		suffix := ""
		if len(vals) > 5 {
			vals, suffix = vals[:5], fmt.Sprintf(" and %d more", len(r.values)-5)
		}
		s := "one of [" + strings.Join(vals, ", ") + "]" + suffix
		if r.absent {
			s += " or no label"
		}
		return s
	default:
		var parts []string
		if len(r.values) > 0 {
			parts = append(parts, "not one of ["+strings.Join(r.values, ", ")+"]")
		}
		if r.gt != nil {
			parts = append(parts, fmt.Sprintf("greater than %d", *r.gt))
		}
		if r.lt != nil {
			parts = append(parts, fmt.Sprintf("less than %d", *r.lt))
		}
		if len(parts) == 0 {
			parts = append(parts, "any value")
		}
		s := strings.Join(parts, " and ")
		if r.absent {
			s += ", or no label"
		}
		return s
	}
}
