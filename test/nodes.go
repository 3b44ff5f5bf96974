package test

import (
	"context"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/backstop-sh/backstop/apis/v1"
)

// LaunchedClaim makes one pending pod in the namespace, waits for a NodeClaim
// to launch for it, and deletes the pod again so later specs plan afresh.
// nodeSelector, if given, is a key and a value.
func LaunchedClaim(ctx context.Context, c client.Client, ns string, nodeSelector ...string) *v1.NodeClaim {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "seed"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
		}}}},
	}
	if len(nodeSelector) == 2 {
		pod.Spec.NodeSelector = map[string]string{nodeSelector[0]: nodeSelector[1]}
	}
	gomega.Expect(c.Create(ctx, pod)).To(gomega.Succeed())
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}
	gomega.Expect(c.Status().Update(ctx, pod)).To(gomega.Succeed())
	var claim v1.NodeClaim
	gomega.Eventually(func(g gomega.Gomega) {
		var list v1.NodeClaimList
		g.Expect(c.List(ctx, &list)).To(gomega.Succeed())
		found := false
		for _, nc := range list.Items {
			if nc.Status.ProviderID != "" && nc.DeletionTimestamp == nil && nc.Status.NodeName == "" {
				claim, found = nc, true
			}
		}
		g.Expect(found).To(gomega.BeTrue())
	}, 15*time.Second).Should(gomega.Succeed())
	gomega.Expect(c.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(gomega.Succeed())
	return &claim
}

// JoinNode plays the kubelet of a launched NodeClaim's instance: its node
// registers, tainted unregistered.
func JoinNode(ctx context.Context, c client.Client, claim *v1.NodeClaim) *corev1.Node {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-" + claim.Name, Labels: map[string]string{corev1.LabelHostname: "node-" + claim.Name}},
		Spec:       corev1.NodeSpec{ProviderID: claim.Status.ProviderID, Taints: []corev1.Taint{v1.UnregisteredNoExecuteTaint}},
	}
	gomega.Expect(c.Create(ctx, node)).To(gomega.Succeed())
	return node
}

// MarkReady plays the kubelet reporting Ready, with 2 CPUs, and
// kube-controller-manager lifting the not-ready taint the API server put on
// the new node.
func MarkReady(ctx context.Context, c client.Client, node *corev1.Node) {
	gomega.Eventually(func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(node), node); err != nil {
			return err
		}
		var taints []corev1.Taint
		for _, t := range node.Spec.Taints {
			if t.Key != corev1.TaintNodeNotReady {
				taints = append(taints, t)
			}
		}
		node.Spec.Taints = taints
		return c.Update(ctx, node)
	}).Should(gomega.Succeed())
	gomega.Eventually(func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(node), node); err != nil {
			return err
		}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi"), corev1.ResourcePods: resource.MustParse("20")}
		node.Status.Capacity = node.Status.Allocatable
		return c.Status().Update(ctx, node)
	}).Should(gomega.Succeed())
}

// Gone reports whether an object no longer exists.
func Gone(ctx context.Context, c client.Client, obj client.Object) func() bool {
	return func() bool {
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		return client.IgnoreNotFound(err) == nil && err != nil
	}
}

// ApplyManifests creates every object of a fixture file.
func ApplyManifests(ctx context.Context, c client.Client, file string) {
	objs, err := ReadManifests(file)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	for _, o := range objs {
		gomega.Expect(c.Create(ctx, o)).To(gomega.Succeed())
	}
}

// DeleteAllNodeClaims deletes every NodeClaim and waits until they are gone,
// so that the next spec starts with no capacity.
func DeleteAllNodeClaims(ctx context.Context, c client.Client) {
	var list v1.NodeClaimList
	gomega.Expect(c.List(ctx, &list)).To(gomega.Succeed())
	for i := range list.Items {
		gomega.Expect(client.IgnoreNotFound(c.Delete(ctx, &list.Items[i]))).To(gomega.Succeed())
	}
	gomega.Eventually(func() []v1.NodeClaim {
		gomega.Expect(c.List(ctx, &list)).To(gomega.Succeed())
		return list.Items
	}, 30*time.Second).Should(gomega.BeEmpty())
}

// AwaitInitialized waits until Backstop has marked the node initialized.
func AwaitInitialized(ctx context.Context, c client.Client, node *corev1.Node) {
	gomega.Eventually(func() map[string]string {
		gomega.Expect(c.Get(ctx, client.ObjectKeyFromObject(node), node)).To(gomega.Succeed())
		return node.Labels
	}, 10*time.Second).Should(gomega.HaveKeyWithValue(v1.InitializedLabelKey, "true"))
}
