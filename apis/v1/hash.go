package v1

import (
	"encoding/json"
	"hash/fnv"
	"strconv"
)

// Drift annotations a NodeClaim is stamped with at creation: the hash of
// its NodePool's template then, and the way that hash was computed. The
// keys are Karpenter's; the version is Backstop's own, so a NodeClaim
// Karpenter stamped is not called drifted for a hash computed differently.
const (
	NodePoolHashAnnotationKey        = Group + "/nodepool-hash"
	NodePoolHashVersionAnnotationKey = Group + "/nodepool-hash-version"
	NodePoolHashVersion              = "backstop-1"
)

// TemplateHash is a hash of what a NodePool's template gives its nodes,
// requirements excluded (a change of requirements drifts only the nodes
// that no longer meet them): labels, annotations, taints, startup taints,
// the NodeClass, expireAfter and terminationGracePeriod.
func (p *NodePool) TemplateHash() string {
	t := p.Spec.Template
	return hashJSON(struct {
		Labels, Annotations    map[string]string
		Taints, StartupTaints  any
		NodeClassRef           any
		ExpireAfter            any
		TerminationGracePeriod any
	}{t.ObjectMeta.Labels, t.ObjectMeta.Annotations, t.Spec.Taints, t.Spec.StartupTaints, t.Spec.NodeClassRef, t.Spec.ExpireAfter, t.Spec.TerminationGracePeriod})
}

// hashJSON hashes a value's JSON (map keys sorted by encoding/json).
func hashJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		// Plain API types always marshal.
		panic(err)
	}
	h := fnv.New64a()
	_, _ = h.Write(data)
	return strconv.FormatUint(h.Sum64(), 10)
}
