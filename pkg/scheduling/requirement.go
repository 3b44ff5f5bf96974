// Package scheduling decides where pending pods go: onto existing or in-flight
// capacity, or onto new NodeClaims from NodePools tried by weight. It is pure
// logic over plain values — no API server and no cloud.
package scheduling

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/backstop-sh/backstop/apis/v1"
)

// Requirement is the set of values one label key may take on a node, where a
// node may also lack the label. Every operator maps onto this one shape:
//
//	In {a,b}      present, value in {a,b}
//	NotIn {a}     absent, or present with a value not in {a}
//	Exists        present, any value
//	DoesNotExist  absent
//	Gt n / Lt n   present, an integer above / below n (Gte and Lte shift n by one)
//
// so intersection, emptiness and compatibility are each one small function.
type Requirement struct {
	Key string
	// complement: values lists the excluded present values, not the allowed ones.
	complement bool
	values     []string // sorted, unique
	// absent: a node without the label satisfies the requirement.
	absent bool
	// gt and lt are exclusive integer bounds on present values; nil is unbounded.
	gt, lt *int64
	// MinValues is the least number of distinct values a NodeClaim's options must span.
	MinValues *int
}

// NewRequirement builds a requirement from an operator and values, normalising
// deprecated beta keys to their stable names.
func NewRequirement(key string, op v1.NodeSelectorOperator, values ...string) (*Requirement, error) {
	if stable, ok := v1.NormalizedLabels[key]; ok {
		key = stable
	}
	r := &Requirement{Key: key}
	switch op {
	case v1.OpIn:
		r.values = sortedUnique(values)
	case v1.OpNotIn:
		r.complement, r.absent, r.values = true, true, sortedUnique(values)
	case v1.OpExists:
		r.complement = true
	case v1.OpDoesNotExist:
		r.absent = true
	case v1.OpGt, v1.OpLt, v1.OpGte, v1.OpLte:
		if len(values) != 1 {
			return nil, fmt.Errorf("requirement %s: operator %s needs exactly one value, got %d", key, op, len(values))
		}
		n, err := strconv.ParseInt(values[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("requirement %s: operator %s needs an integer, got %q", key, op, values[0])
		}
		r.complement = true
		switch op {
		case v1.OpGt:
			r.gt = &n
		case v1.OpGte:
			// Gte n is Gt n-1; Gte of the least integer bounds nothing.
			if n > math.MinInt64 {
				n--
				r.gt = &n
			}
		case v1.OpLt:
			r.lt = &n
		case v1.OpLte:
			if n < math.MaxInt64 {
				n++
				r.lt = &n
			}
		}
	default:
		return nil, fmt.Errorf("requirement %s: unknown operator %q", key, op)
	}
	return r, nil
}

// MustRequirement is NewRequirement for values known to be valid.
func MustRequirement(key string, op v1.NodeSelectorOperator, values ...string) *Requirement {
	r, err := NewRequirement(key, op, values...)
	if err != nil {
		panic(err)
	}
	return r
}

func sortedUnique(values []string) []string {
	if len(values) == 0 {
		return nil
	}
	out := slices.Clone(values)
	sort.Strings(out)
	return slices.Compact(out)
}

// inBounds reports whether a present value meets the integer bounds.
func (r *Requirement) inBounds(value string) bool {
	if r.gt == nil && r.lt == nil {
		return true
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return false
	}
	return (r.gt == nil || n > *r.gt) && (r.lt == nil || n < *r.lt)
}

func (r *Requirement) listed(value string) bool {
	_, found := slices.BinarySearch(r.values, value)
	return found
}

// Has reports whether a node with the label set to value satisfies r.
func (r *Requirement) Has(value string) bool {
	return r.listed(value) != r.complement && r.inBounds(value)
}

// AllowsAbsent reports whether a node without the label satisfies r.
func (r *Requirement) AllowsAbsent() bool { return r.absent }

// Matches reports whether a node's label (value, and whether it is set) satisfies r.
func (r *Requirement) Matches(value string, set bool) bool {
	if !set {
		return r.absent
	}
	return r.Has(value)
}

// Finite reports whether r allows a known, finite list of present values.
func (r *Requirement) Finite() bool { return !r.complement }

// Values returns the allowed present values of a finite requirement, sorted.
func (r *Requirement) Values() []string {
	if r.complement {
		return nil
	}
	return r.values
}

// Len is the number of allowed present values; math.MaxInt for an open set.
func (r *Requirement) Len() int {
	if r.complement {
		if r.presentEmpty() {
			return 0
		}
		return math.MaxInt
	}
	return len(r.values)
}

// presentEmpty reports whether no present value satisfies r.
func (r *Requirement) presentEmpty() bool {
	if !r.complement {
		return len(r.values) == 0
	}
	// An open set with bounds: every integer has infinitely many spellings
	// ("7", "07", "007", ...), so finitely many exclusions cannot empty a
	// non-empty integer range.
	if r.gt != nil && *r.gt == math.MaxInt64 || r.lt != nil && *r.lt == math.MinInt64 {
		return true
	}
	if r.gt != nil && r.lt != nil {
		return *r.lt <= *r.gt+1
	}
	return false
}

// IsEmpty reports whether no node can satisfy r, with or without the label.
func (r *Requirement) IsEmpty() bool { return !r.absent && r.presentEmpty() }

// Intersects reports whether some node satisfies both requirements; it is
// !r.Intersect(o).IsEmpty() without building the intersection.
func (r *Requirement) Intersects(o *Requirement) bool {
	if r.absent && o.absent {
		return true
	}
	switch {
	case !r.complement:
		for _, v := range r.values {
			if o.Has(v) && r.inBounds(v) {
				return true
			}
		}
		return false
	case !o.complement:
		for _, v := range o.values {
			if r.Has(v) && o.inBounds(v) {
				return true
			}
		}
		return false
	default:
		both := Requirement{complement: true, gt: maxBound(r.gt, o.gt), lt: minBound(r.lt, o.lt)}
		return !both.presentEmpty()
	}
}

// Intersect returns the values both requirements allow. It does not change r or o.
func (r *Requirement) Intersect(o *Requirement) *Requirement {
	out := &Requirement{Key: r.Key, absent: r.absent && o.absent, gt: maxBound(r.gt, o.gt), lt: minBound(r.lt, o.lt)}
	switch {
	case r.complement && o.complement:
		out.complement = true
		out.values = sortedUnique(append(slices.Clone(r.values), o.values...))
	case r.complement:
		out.values = filter(o.values, func(v string) bool { return !r.listed(v) })
	case o.complement:
		out.values = filter(r.values, func(v string) bool { return !o.listed(v) })
	default:
		out.values = filter(r.values, o.listed)
	}
	if !out.complement {
		// A finite set absorbs its bounds.
		out.values = filter(out.values, out.inBounds)
		out.gt, out.lt = nil, nil
	} else {
		// Exclusions outside the bounds change nothing; drop them so equal sets print equally.
		out.values = filter(out.values, out.inBounds)
	}
	out.MinValues = maxInt(r.MinValues, o.MinValues)
	return out
}

// Any returns an allowed present value, the smallest listed one of a finite set
// or an integer within the bounds; "" for an open set without bounds (any label
// value but the excluded ones) and for a requirement that allows no present value.
func (r *Requirement) Any() string {
	if !r.complement {
		if len(r.values) > 0 {
			return r.values[0]
		}
		return ""
	}
	if (r.gt == nil && r.lt == nil) || r.presentEmpty() {
		return ""
	}
	n := int64(0)
	if r.gt != nil {
		n = *r.gt + 1
	} else if r.lt != nil && *r.lt <= 0 {
		n = *r.lt - 1
	}
	// Finitely many exclusions: among len+1 spellings of n ("n", "0n", "00n", ...)
	// one is free, and all of them parse to n.
	digits, sign := strconv.FormatInt(n, 10), ""
	if n < 0 {
		sign, digits = "-", digits[1:]
	}
	for zeros := 0; ; zeros++ {
		if s := sign + strings.Repeat("0", zeros) + digits; r.Has(s) {
			return s
		}
	}
}

// String is a canonical form: equal sets print equally.
func (r *Requirement) String() string {
	var b strings.Builder
	b.WriteString(r.Key)
	if r.absent {
		b.WriteString("|absent")
	}
	if r.complement {
		b.WriteString(" not")
	} else {
		b.WriteString(" in")
	}
	b.WriteString("[")
	b.WriteString(strings.Join(r.values, ","))
	b.WriteString("]")
	if r.gt != nil {
		fmt.Fprintf(&b, ">%d", *r.gt)
	}
	if r.lt != nil {
		fmt.Fprintf(&b, "<%d", *r.lt)
	}
	if r.MinValues != nil {
		fmt.Fprintf(&b, " min=%d", *r.MinValues)
	}
	return b.String()
}

// NodeSelectorRequirements renders r as API requirements whose conjunction allows
// the same values. It needs more than one when bounds meet exclusions.
func (r *Requirement) NodeSelectorRequirements() []v1.NodeSelectorRequirementWithMinValues {
	mk := func(op v1.NodeSelectorOperator, values ...string) v1.NodeSelectorRequirementWithMinValues {
		return v1.NodeSelectorRequirementWithMinValues{Key: r.Key, Operator: op, Values: values, MinValues: r.MinValues}
	}
	switch {
	case !r.complement && len(r.values) > 0 && !r.absent:
		return []v1.NodeSelectorRequirementWithMinValues{mk(v1.OpIn, r.values...)}
	case !r.complement && len(r.values) == 0 && r.absent:
		return []v1.NodeSelectorRequirementWithMinValues{mk(v1.OpDoesNotExist)}
	}
	var out []v1.NodeSelectorRequirementWithMinValues
	if r.complement && len(r.values) > 0 {
		out = append(out, mk(v1.OpNotIn, r.values...))
	}
	if r.gt != nil {
		out = append(out, mk(v1.OpGt, strconv.FormatInt(*r.gt, 10)))
	}
	if r.lt != nil {
		out = append(out, mk(v1.OpLt, strconv.FormatInt(*r.lt, 10)))
	}
	if r.complement && !r.absent && r.gt == nil && r.lt == nil {
		out = append(out, mk(v1.OpExists))
	}
	if len(out) == 0 {
		// Both a finite present set and absence: no single operator says it.
		// Callers only render node-side requirements, which never allow both.
		out = append(out, mk(v1.OpIn, r.values...))
	}
	return out
}

func filter(values []string, keep func(string) bool) []string {
	var out []string
	for _, v := range values {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}

func maxBound(a, b *int64) *int64 {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case *a > *b:
		return a
	default:
		return b
	}
}

func minBound(a, b *int64) *int64 {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case *a < *b:
		return a
	default:
		return b
	}
}

func maxInt(a, b *int) *int {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case *a >= *b:
		return a
	default:
		return b
	}
}
