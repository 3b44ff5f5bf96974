package disruption

import "testing"

func TestNoticesTellOncePerMessageUntilForgotten(t *testing.T) {
	var n notices
	said := 0
	tell := func(key, msg string) { n.tell(key, msg, func() { said++ }) }
	tell("nodeclaim/a", "pod x carries do-not-disrupt")
	tell("nodeclaim/a", "pod x carries do-not-disrupt")
	if said != 1 {
		t.Fatalf("the same message twice was said %d times, want once", said)
	}
	tell("nodeclaim/a", "PodDisruptionBudget y allows no disruption now")
	if said != 2 {
		t.Fatalf("a new blocker was not said")
	}
	n.forget("nodeclaim/a")
	tell("nodeclaim/a", "PodDisruptionBudget y allows no disruption now")
	if said != 3 {
		t.Fatalf("a blocker that went and came back was not said again")
	}
	n.keep(map[string]bool{})
	tell("nodeclaim/a", "PodDisruptionBudget y allows no disruption now")
	if said != 4 {
		t.Fatalf("a NodeClaim gone from the world was still remembered")
	}
}
