package scheduling_test

import (
	"fmt"
	"strconv"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

func req(key string, op v1.NodeSelectorOperator, values ...string) *scheduling.Requirement {
	return scheduling.MustRequirement(key, op, values...)
}

var _ = Describe("Requirement", func() {
	type probe struct {
		value string
		set   bool
	}
	absent := probe{set: false}
	val := func(v string) probe { return probe{value: v, set: true} }

	DescribeTable("matches a node's label as Kubernetes node affinity does",
		func(r *scheduling.Requirement, matching []probe, notMatching []probe) {
			for _, p := range matching {
				Expect(r.Matches(p.value, p.set)).To(BeTrue(), "%s should match %+v", r, p)
			}
			for _, p := range notMatching {
				Expect(r.Matches(p.value, p.set)).To(BeFalse(), "%s should not match %+v", r, p)
			}
		},
		Entry("In", req("k", v1.OpIn, "a", "b"), []probe{val("a"), val("b")}, []probe{val("c"), absent}),
		Entry("NotIn", req("k", v1.OpNotIn, "a"), []probe{val("b"), absent}, []probe{val("a")}),
		Entry("Exists", req("k", v1.OpExists), []probe{val("a"), val("")}, []probe{absent}),
		Entry("DoesNotExist", req("k", v1.OpDoesNotExist), []probe{absent}, []probe{val("a")}),
		Entry("Gt", req("k", v1.OpGt, "4"), []probe{val("5"), val("05"), val("100")}, []probe{val("4"), val("x"), absent}),
		Entry("Lt", req("k", v1.OpLt, "4"), []probe{val("3"), val("-10")}, []probe{val("4"), val("x"), absent}),
		Entry("Gte", req("k", v1.OpGte, "4"), []probe{val("4"), val("5")}, []probe{val("3"), absent}),
		Entry("Lte", req("k", v1.OpLte, "4"), []probe{val("4"), val("3")}, []probe{val("5"), absent}),
	)

	It("normalises beta label keys to their stable names", func() {
		Expect(req("beta.kubernetes.io/arch", v1.OpIn, "amd64").Key).To(Equal("kubernetes.io/arch"))
		Expect(req("failure-domain.beta.kubernetes.io/zone", v1.OpIn, "a").Key).To(Equal("topology.kubernetes.io/zone"))
		Expect(req("beta.kubernetes.io/instance-type", v1.OpIn, "m5.large").Key).To(Equal("node.kubernetes.io/instance-type"))
	})

	DescribeTable("rejects malformed integer operators",
		func(op v1.NodeSelectorOperator, values []string, want string) {
			_, err := scheduling.NewRequirement("k", op, values...)
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("two values", v1.OpGt, []string{"1", "2"}, "needs exactly one value"),
		Entry("not an integer", v1.OpLt, []string{"big"}, `needs an integer, got "big"`),
	)

	DescribeTable("intersects",
		func(a, b *scheduling.Requirement, empty bool, want string) {
			got := a.Intersect(b)
			Expect(got.IsEmpty()).To(Equal(empty), "%s ∩ %s = %s", a, b, got)
			if want != "" {
				Expect(got.String()).To(Equal(want))
			}
		},
		Entry("In and In", req("k", v1.OpIn, "a", "b"), req("k", v1.OpIn, "b", "c"), false, "k in[b]"),
		Entry("disjoint In", req("k", v1.OpIn, "a"), req("k", v1.OpIn, "b"), true, "k in[]"),
		Entry("In and NotIn", req("k", v1.OpIn, "a", "b"), req("k", v1.OpNotIn, "a"), false, "k in[b]"),
		Entry("NotIn and NotIn keep absence", req("k", v1.OpNotIn, "a"), req("k", v1.OpNotIn, "b"), false, "k|absent not[a,b]"),
		Entry("Exists and DoesNotExist", req("k", v1.OpExists), req("k", v1.OpDoesNotExist), true, ""),
		Entry("NotIn and DoesNotExist", req("k", v1.OpNotIn, "a"), req("k", v1.OpDoesNotExist), false, "k|absent in[]"),
		Entry("Gt and Lt leaving a gap", req("k", v1.OpGt, "1"), req("k", v1.OpLt, "3"), false, "k not[]>1<3"),
		Entry("Gt and Lt leaving none", req("k", v1.OpGt, "1"), req("k", v1.OpLt, "2"), true, ""),
		Entry("Gte and Lte on one integer", req("k", v1.OpGte, "2"), req("k", v1.OpLte, "2"), false, "k not[]>1<3"),
		Entry("Gt filters In", req("k", v1.OpIn, "1", "5", "x"), req("k", v1.OpGt, "2"), false, "k in[5]"),
		Entry("NotIn cannot empty an integer range", req("k", v1.OpGt, "1"), req("k", v1.OpNotIn, "2"), false, ""),
	)

	It("keeps the larger minValues", func() {
		a, b := req("k", v1.OpIn, "a", "b", "c"), req("k", v1.OpExists)
		two, three := 2, 3
		a.MinValues, b.MinValues = &two, &three
		Expect(*a.Intersect(b).MinValues).To(Equal(3))
	})

	It("offers a witness that really is allowed", func() {
		r := req("k", v1.OpGt, "1").Intersect(req("k", v1.OpLt, "3")).Intersect(req("k", v1.OpNotIn, "2"))
		Expect(r.Any()).NotTo(BeEmpty())
		Expect(r.Has(r.Any())).To(BeTrue(), "%q should be in %s", r.Any(), r)
	})
})

var _ = Describe("Requirements", func() {
	It("reports the key on which two sets conflict", func() {
		a := scheduling.NewRequirements(req("zone", v1.OpIn, "a"), req("arch", v1.OpIn, "amd64"))
		b := scheduling.NewRequirements(req("arch", v1.OpIn, "arm64"))
		Expect(a.Intersects(b)).To(MatchError(ContainSubstring("arch: one of [amd64] does not meet one of [arm64]")))
		Expect(a.Intersects(scheduling.NewRequirements(req("other", v1.OpIn, "x")))).To(Succeed())
	})

	It("derives the labels a node must carry", func() {
		rs := scheduling.NewRequirements(req("zone", v1.OpIn, "a"), req("arch", v1.OpIn, "amd64", "arm64"), req("gpu", v1.OpDoesNotExist))
		Expect(rs.Labels()).To(Equal(map[string]string{"zone": "a"}))
	})

	It("round-trips through the API form", func() {
		rs := scheduling.NewRequirements(req("a", v1.OpIn, "x", "y"), req("b", v1.OpNotIn, "z"), req("c", v1.OpGt, "3"), req("d", v1.OpDoesNotExist), req("e", v1.OpExists))
		back, err := scheduling.FromAPI(rs.ToAPI())
		Expect(err).NotTo(HaveOccurred())
		Expect(back.String()).To(Equal(rs.String()))
	})
})

// The algebra's laws, checked on every pair of requirements the fuzzer invents.
// `go test` runs the seeds; `go test -fuzz FuzzRequirementLaws ./pkg/scheduling` searches.
func FuzzRequirementLaws(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 1, 2, 1, 3, 4}, {1, 0, 0, 2, 1, 1}, {4, 3, 0, 5, 6, 0}, {6, 2, 0, 7, 3, 0},
		{2, 0, 0, 3, 0, 0}, {4, 9, 0, 1, 9, 7}, {5, 5, 0, 4, 4, 0}, {0, 0, 0, 0, 0, 0},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, rest := fuzzRequirement(data)
		b, rest2 := fuzzRequirement(rest)
		c, _ := fuzzRequirement(rest2)
		if a == nil || b == nil || c == nil {
			return
		}
		ab, ba := a.Intersect(b), b.Intersect(a)
		if a.Intersects(b) == ab.IsEmpty() {
			t.Fatalf("Intersects(%s, %s) = %v but the intersection %s is empty = %v", a, b, a.Intersects(b), ab, ab.IsEmpty())
		}
		if ab.String() != ba.String() {
			t.Fatalf("intersection is not commutative: %s ∩ %s = %s but %s", a, b, ab, ba)
		}
		if l, r := ab.Intersect(c), a.Intersect(b.Intersect(c)); l.String() != r.String() {
			t.Fatalf("intersection is not associative: (%s ∩ %s) ∩ %s = %s but %s", a, b, c, l, r)
		}
		for _, p := range probes(a, b, ab) {
			want := a.Matches(p.value, p.set) && b.Matches(p.value, p.set)
			if got := ab.Matches(p.value, p.set); got != want {
				t.Fatalf("%s ∩ %s = %s, which says %v for %+v; the two sides say %v", a, b, ab, got, p, want)
			}
			if aa := a.Intersect(a); aa.Matches(p.value, p.set) != a.Matches(p.value, p.set) {
				t.Fatalf("intersection is not idempotent: %s ∩ itself = %s differs at %+v", a, aa, p)
			}
			if want && ab.IsEmpty() {
				t.Fatalf("%s and %s both allow %+v, but their intersection %s says it is empty", a, b, p, ab)
			}
		}
		// compatible(a, b) iff the intersection admits a value: a non-empty
		// intersection must offer a witness both sides accept.
		if !ab.IsEmpty() {
			if ab.AllowsAbsent() {
				if !a.Matches("", false) || !b.Matches("", false) {
					t.Fatalf("%s allows absence but %s or %s does not", ab, a, b)
				}
			} else if w := ab.Any(); w != "" && (!a.Has(w) || !b.Has(w)) {
				t.Fatalf("witness %q of %s is not allowed by %s and %s", w, ab, a, b)
			} else if w == "" && ab.Finite() {
				t.Fatalf("non-empty finite %s offers no witness", ab)
			}
		}
	})
}

type fuzzProbe struct {
	value string
	set   bool
}

var fuzzValues = []string{"1", "2", "3", "a", "b", "01", "-1", "10", "c", "0"}

var fuzzOps = []v1.NodeSelectorOperator{v1.OpIn, v1.OpNotIn, v1.OpExists, v1.OpDoesNotExist, v1.OpGt, v1.OpLt, v1.OpGte, v1.OpLte}

// fuzzRequirement reads an operator byte and a value count and values from data.
func fuzzRequirement(data []byte) (*scheduling.Requirement, []byte) {
	if len(data) < 3 {
		return nil, nil
	}
	op := fuzzOps[int(data[0])%len(fuzzOps)]
	n := int(data[1]) % 4
	var values []string
	switch op {
	case v1.OpGt, v1.OpLt, v1.OpGte, v1.OpLte:
		values = []string{strconv.Itoa(int(int8(data[2])) % 12)}
	case v1.OpExists, v1.OpDoesNotExist:
	default:
		for i := 0; i < n; i++ {
			values = append(values, fuzzValues[(int(data[2])+i*7)%len(fuzzValues)])
		}
	}
	r, err := scheduling.NewRequirement("k", op, values...)
	if err != nil {
		panic(fmt.Sprintf("fuzz built an invalid requirement %s %v: %v", op, values, err))
	}
	return r, data[3:]
}

// probes are label values worth trying against requirements: every listed
// value, integers around the bounds in two spellings, absence and a stranger.
func probes(rs ...*scheduling.Requirement) []fuzzProbe {
	out := []fuzzProbe{{set: false}, {value: "zzz", set: true}}
	for _, v := range fuzzValues {
		out = append(out, fuzzProbe{value: v, set: true})
	}
	for i := -14; i <= 14; i++ {
		out = append(out, fuzzProbe{value: strconv.Itoa(i), set: true}, fuzzProbe{value: "0" + strconv.Itoa(i), set: true})
	}
	for _, r := range rs {
		if w := r.Any(); w != "" {
			out = append(out, fuzzProbe{value: w, set: true})
		}
	}
	return out
}
