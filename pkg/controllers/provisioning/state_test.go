package provisioning_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

var _ = Describe("a provisionable pod", func() {
	unschedulable := func(mutate ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		}}}}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	DescribeTable("is one kube-scheduler marked Unschedulable and nobody has placed",
		func(pod *corev1.Pod, want bool) {
			Expect(provisioning.IsProvisionable(pod)).To(Equal(want))
		},
		Entry("unschedulable", unschedulable(), true),
		Entry("not yet looked at by kube-scheduler", &corev1.Pod{}, false),
		Entry("scheduling gated", unschedulable(func(p *corev1.Pod) { p.Status.Conditions[0].Reason = corev1.PodReasonSchedulingGated }), false),
		Entry("bound", unschedulable(func(p *corev1.Pod) { p.Spec.NodeName = "node-1" }), false),
		Entry("nominated to a node by preemption", unschedulable(func(p *corev1.Pod) { p.Status.NominatedNodeName = "node-1" }), false),
		Entry("a DaemonSet pod", unschedulable(func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: "ds"}}
		}), false),
		Entry("a mirror pod", unschedulable(func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "Node", Name: "node-1"}}
		}), false),
		Entry("being deleted", unschedulable(func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} }), false),
		Entry("finished", unschedulable(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), false),
	)
})

var _ = DescribeTable("pods that await kube-scheduler's first verdict",
	func(pod *corev1.Pod, want bool) { Expect(provisioning.AwaitsScheduler(pod)).To(Equal(want)) },
	Entry("new", &corev1.Pod{}, true),
	Entry("for the default scheduler by name", &corev1.Pod{Spec: corev1.PodSpec{SchedulerName: corev1.DefaultSchedulerName}}, true),
	Entry("for another scheduler", &corev1.Pod{Spec: corev1.PodSpec{SchedulerName: "volcano"}}, false),
	Entry("scheduling gated", &corev1.Pod{Spec: corev1.PodSpec{SchedulingGates: []corev1.PodSchedulingGate{{Name: "wait"}}}}, false),
	Entry("judged already", &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}}}, false),
	Entry("bound", &corev1.Pod{Spec: corev1.PodSpec{NodeName: "node-1"}}, false),
	Entry("nominated by preemption", &corev1.Pod{Status: corev1.PodStatus{NominatedNodeName: "node-1"}}, false),
	Entry("a DaemonSet pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet"}}}}, false),
	Entry("being deleted", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &metav1.Time{}}}, false),
	Entry("finished", &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed}}, false),
)

var _ = DescribeTable("pods that follow their node",
	func(pod *corev1.Pod, want bool) { Expect(scheduling.FollowsNode(pod)).To(Equal(want)) },
	Entry("a DaemonSet pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet"}}}}, true),
	Entry("a mirror pod by owner", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "Node"}}}}, true),
	Entry("a mirror pod by annotation", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{corev1.MirrorPodAnnotationKey: "x"}}}, true),
	Entry("a ReplicaSet pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet"}}}}, false),
)
