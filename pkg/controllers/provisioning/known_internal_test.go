package provisioning

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

// A pod the snapshot did not list because it came after the listing is still
// pending: forgetting it would make its next update look new and hold the
// batch window open.
func TestForgetBoundKeepsPodsSeenAfterTheListing(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	p := New(nil, nil, nil, clk, nil, Options{BatchIdleDuration: time.Second, BatchMaxDuration: 10 * time.Second})
	before := types.NamespacedName{Namespace: "ns", Name: "bound-since"}
	after := types.NamespacedName{Namespace: "ns", Name: "came-after-the-listing"}
	p.observe(before)
	clk.Step(time.Millisecond)
	listed := clk.Now()
	clk.Step(time.Millisecond)
	p.observe(after)

	p.forgetBound(nil, nil, listed)
	if p.observe(after) {
		t.Errorf("%s was forgotten: its next update would extend the window as a new pod", after.Name)
	}
	if !p.observe(before) {
		t.Errorf("%s, seen before the listing and not pending in it, is still known", before.Name)
	}
}
