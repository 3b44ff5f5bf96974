package provisioning

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// A plan reads an in-flight NodeClaim's room from its view, made once per
// version of the NodeClaim and of its pool's instance-type list.
func TestClaimViewsFollowTheNodeClaimAndTheTypes(t *testing.T) {
	sized := func(name string, cpu int64) *scheduling.InstanceType {
		return &scheduling.InstanceType{Name: name, Capacity: scheduling.Resources{CPU: cpu * 1000, Memory: cpu << 32, Pods: 50}}
	}
	types := []*scheduling.InstanceType{sized("four", 4), sized("eight", 8)}
	claim := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "claim", ResourceVersion: "1", Labels: map[string]string{v1.NodePoolLabelKey: "pool"}},
		Spec: v1.NodeClaimSpec{Requirements: []v1.NodeSelectorRequirementWithMinValues{
			{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"four", "eight"}},
			{Key: corev1.LabelTopologyZone, Operator: v1.OpIn, Values: []string{"zone-a"}},
		}},
	}
	var views claimViews
	first := views.view(claim, types)
	if first.allocatable.CPU != 4000 || first.labels[corev1.LabelTopologyZone] != "zone-a" || first.labels[v1.NodePoolLabelKey] != "pool" {
		t.Fatalf("view of the NodeClaim: %d mCPU, labels %v; want the least of its types (4000) and its zone and pool", first.allocatable.CPU, first.labels)
	}

	// The same version of the NodeClaim and the same list: the same view.
	claim.Spec.Requirements[0].Values = []string{"eight"}
	if again := views.view(claim, types); again.allocatable.CPU != 4000 {
		t.Errorf("unchanged version read again: %d mCPU", again.allocatable.CPU)
	}
	// A new version of the NodeClaim is read again.
	claim.ResourceVersion = "2"
	if updated := views.view(claim, types); updated.allocatable.CPU != 8000 {
		t.Errorf("new version of the NodeClaim: %d mCPU, want 8000", updated.allocatable.CPU)
	}
	// So is a new instance-type list (prices or capacity marks changed).
	bigger := []*scheduling.InstanceType{sized("four", 4), sized("eight", 16)}
	if refreshed := views.view(claim, bigger); refreshed.allocatable.CPU != 16000 {
		t.Errorf("new instance-type list: %d mCPU, want 16000", refreshed.allocatable.CPU)
	}
	views.prune(map[string]*v1.NodeClaim{})
	if len(views.views) != 0 {
		t.Errorf("a NodeClaim that is gone keeps its view")
	}
}
