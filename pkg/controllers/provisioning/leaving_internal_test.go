package provisioning

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/backstop-sh/backstop/apis/v1"
)

// The pods of a leaving node are planned elsewhere at once. A node tainted
// because it is being replaced, replacement first, is not leaving: its
// replacements were planned for its pods, and planning them again would ask
// for their capacity twice.
func TestLeavingNodes(t *testing.T) {
	now := metav1.Now()
	replacing := map[string]string{v1.ReplacingAnnotation: "spot"}
	interrupted := map[string]string{v1.ReplacingAnnotation: "spot", v1.InterruptedAnnotation: "SpotInterruption"}
	for _, c := range []struct {
		name        string
		tainted     bool
		nodeDeleted bool
		claimGone   bool
		annotations map[string]string
		leaving     bool
	}{
		{name: "a node like any other", leaving: false},
		{name: "tainted for its drain", tainted: true, leaving: true},
		{name: "being replaced, not tainted yet", annotations: replacing, leaving: false},
		{name: "tainted because it is being replaced", tainted: true, annotations: replacing, leaving: false},
		{name: "being replaced and warned of a Spot reclaim", tainted: true, annotations: interrupted, leaving: true},
		{name: "being replaced, its Node deleted", tainted: true, nodeDeleted: true, annotations: replacing, leaving: true},
		{name: "being replaced, its NodeClaim deleted", tainted: true, claimGone: true, annotations: replacing, leaving: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			node := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}
			if c.tainted {
				node.Spec.Taints = []corev1.Taint{v1.DisruptedNoScheduleTaint}
			}
			if c.nodeDeleted {
				node.DeletionTimestamp = &now
			}
			claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "claim-1", Annotations: c.annotations}, Status: v1.NodeClaimStatus{NodeName: "node-1"}}
			if c.claimGone {
				claim.DeletionTimestamp = &now
			}
			got := leavingNodes([]corev1.Node{node}, map[string]*v1.NodeClaim{claim.Name: claim})["node-1"]
			if got != c.leaving {
				t.Errorf("leaving: got %v, want %v", got, c.leaving)
			}
		})
	}
}
