package static_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/pkg/controllers/static"
	"github.com/backstop-sh/backstop/test"
)

var _ = Describe("the static NodePool controller", func() {
	var w *world
	BeforeEach(func() { w = newWorld() })

	newPool := func(replicas int64, mutate ...func(*v1.NodePool)) *v1.NodePool {
		p := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{GenerateName: "static-"}, Spec: v1.NodePoolSpec{Replicas: ptr.To(replicas),
			Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}}}}}
		for _, m := range mutate {
			m(p)
		}
		Expect(env.Client.Create(w.ctx, p)).To(Succeed())
		DeferCleanup(func() {
			var list v1.NodeClaimList
			Expect(env.Client.List(w.ctx, &list, client.MatchingLabels{v1.NodePoolLabelKey: p.Name})).To(Succeed())
			for i := range list.Items {
				c := &list.Items[i]
				c.Finalizers = nil
				Expect(client.IgnoreNotFound(env.Client.Update(w.ctx, c))).To(Succeed())
				Expect(client.IgnoreNotFound(env.Client.Delete(w.ctx, c))).To(Succeed())
			}
			Expect(client.IgnoreNotFound(env.Client.Delete(w.ctx, p))).To(Succeed())
		})
		// The controller reads the pool from its cache.
		Eventually(func() error { return w.client.Get(w.ctx, client.ObjectKeyFromObject(p), &v1.NodePool{}) }).Should(Succeed())
		return p
	}
	// setReplicas changes the pool's replicas and waits until the cache has it.
	setReplicas := func(p *v1.NodePool, n int64) {
		Expect(env.Client.Get(w.ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
		p.Spec.Replicas = ptr.To(n)
		Expect(env.Client.Update(w.ctx, p)).To(Succeed())
		Eventually(func() int64 {
			var cached v1.NodePool
			Expect(w.client.Get(w.ctx, client.ObjectKeyFromObject(p), &cached)).To(Succeed())
			return *cached.Spec.Replicas
		}).Should(Equal(n))
	}
	reconcileOnce := func(p *v1.NodePool) reconcile.Result {
		res, err := w.controller.Reconcile(w.ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(p)})
		Expect(err).NotTo(HaveOccurred())
		return res
	}
	claimsOf := func(p *v1.NodePool) (live, deleting []*v1.NodeClaim) {
		var list v1.NodeClaimList
		Expect(env.Client.List(w.ctx, &list, client.MatchingLabels{v1.NodePoolLabelKey: p.Name})).To(Succeed())
		for i := range list.Items {
			if list.Items[i].DeletionTimestamp != nil {
				deleting = append(deleting, &list.Items[i])
			} else {
				live = append(live, &list.Items[i])
			}
		}
		return live, deleting
	}
	names := func(claims []*v1.NodeClaim) []string {
		var out []string
		for _, c := range claims {
			out = append(out, c.Name)
		}
		return out
	}
	// launch plays the launch and registration controllers: the claim has
	// an instance and a node, initialized when asked.
	launch := func(claim *v1.NodeClaim, initialized bool) *corev1.Node {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-" + claim.Name}, Spec: corev1.NodeSpec{ProviderID: "fake:///" + claim.Name}}
		Expect(env.Client.Create(w.ctx, node)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(w.ctx, node))).To(Succeed()) })
		Expect(env.Client.Get(w.ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		claim.Status.ProviderID, claim.Status.NodeName = node.Spec.ProviderID, node.Name
		if initialized {
			meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, Reason: "Initialized"})
		}
		Expect(env.Client.Status().Update(w.ctx, claim)).To(Succeed())
		Eventually(func() error { return w.client.Get(w.ctx, client.ObjectKeyFromObject(node), &corev1.Node{}) }).Should(Succeed())
		return node
	}
	podOn := func(node *corev1.Node, annotations map[string]string) {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "app-", Namespace: "default", Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app", UID: "uid-app", Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{NodeName: node.Name, Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		Expect(env.Client.Create(w.ctx, pod)).To(Succeed())
		DeferCleanup(func() {
			Expect(client.IgnoreNotFound(env.Client.Delete(w.ctx, pod, client.GracePeriodSeconds(0)))).To(Succeed())
		})
		Eventually(func() error { return w.client.Get(w.ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}) }).Should(Succeed())
	}
	disruptionReason := func(claim *v1.NodeClaim) string {
		c := meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionDisruptionReason)
		if c == nil {
			return ""
		}
		return c.Reason
	}

	It("creates the pool's replicas without pods, once: a reconcile right after the creates, and one by a restarted controller, create none", func() {
		p := newPool(3)
		reconcileOnce(p)
		live, _ := claimsOf(p)
		Expect(live).To(HaveLen(3))
		for _, c := range live {
			Expect(c.Spec.NodeClassRef.Name).To(Equal("default"))
			Expect(c.Spec.Requirements).To(ContainElement(And(HaveField("Key", corev1.LabelInstanceTypeStable), HaveField("Values", Equal([]string{"m5.large", "m5.xlarge"})))),
				"the pool's types, cheapest first")
			Expect(c.Annotations).To(HaveKey(v1.NodePoolHashAnnotationKey), "drift compares the pool's template with it")
		}
		Expect(w.events()).To(ContainElement(ContainSubstring("Created 3 NodeClaim(s) to keep 3 replicas")))

		// The cache may not have the new NodeClaims yet; the count is the API server's.
		reconcileOnce(p)
		w2 := newWorld()
		_, err := w2.controller.Reconcile(w.ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(p)})
		Expect(err).NotTo(HaveOccurred())
		live, _ = claimsOf(p)
		Expect(live).To(HaveLen(3))

		// One deleted from outside (an interruption, say): it is made up.
		Expect(env.Client.Delete(w.ctx, live[0])).To(Succeed())
		reconcileOnce(p)
		live, deleting := claimsOf(p)
		Expect(live).To(HaveLen(3))
		Expect(deleting).To(HaveLen(1))
	})

	It("keeps within limits.nodes and says on the pool why replicas are missing", func() {
		p := newPool(3, func(p *v1.NodePool) { p.Spec.Limits = corev1.ResourceList{"nodes": resource.MustParse("2")} })
		reconcileOnce(p)
		live, _ := claimsOf(p)
		Expect(live).To(HaveLen(2))
		Expect(w.events()).To(ContainElement(And(ContainSubstring("ReplicasShort"), ContainSubstring("1 of 3 replicas cannot be created: the pool's limits.nodes (2) is reached"))))
		reconcileOnce(p)
		Expect(w.events()).To(BeEmpty(), "said once while it stays so")
		setReplicas(p, 2)
		reconcileOnce(p)
		setReplicas(p, 3)
		reconcileOnce(p)
		Expect(w.events()).To(ContainElement(ContainSubstring("ReplicasShort")), "said again once it was whole in between")
	})

	It("scales down the NodeClaims not launched first, then the emptiest nodes, nodes with pods that may not be disrupted last", func() {
		p := newPool(4)
		reconcileOnce(p)
		live, _ := claimsOf(p)
		Expect(live).To(HaveLen(4))
		busy, protected, empty, unlaunched := live[0], live[1], live[2], live[3]
		podOn(launch(busy, true), nil)
		podOn(launch(protected, true), map[string]string{v1.DoNotDisruptAnnotation: "true"})
		launch(empty, true)

		reg := prometheus.NewRegistry()
		w.controller.Metrics = metrics.NewLifecycle(reg)
		setReplicas(p, 1)
		reconcileOnce(p)
		live, deleting := claimsOf(p)
		Expect(names(live)).To(ConsistOf(protected.Name))
		Expect(names(deleting)).To(ConsistOf(busy.Name, empty.Name, unlaunched.Name))
		for _, c := range deleting {
			Expect(disruptionReason(c)).To(Equal(static.ReasonScaledDown))
		}
		removed, _ := test.Metric(reg, "karpenter_nodeclaims_disrupted_total", map[string]string{"nodepool": p.Name, "reason": "scaleddown"})
		Expect(removed).To(Equal(3.0))
	})

	It("reads a NodeClaim changed between its read and its removal again, and removes it", func() {
		p := newPool(2)
		reconcileOnce(p)
		live, _ := claimsOf(p)
		Expect(live).To(HaveLen(2))
		setReplicas(p, 1)

		changed := 0
		direct, err := client.NewWithWatch(env.Config, client.Options{Scheme: test.Scheme})
		Expect(err).NotTo(HaveOccurred())
		racing := interceptor.NewClient(direct, interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				if changed == 0 {
					// The launch controller writes the NodeClaim first.
					changed++
					other := &v1.NodeClaim{}
					Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(obj), other)).To(Succeed())
					other.Labels["example.com/touched"] = "yes"
					Expect(env.Client.Update(ctx, other)).To(Succeed())
				}
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		})
		c := static.New(racing, env.Client, w.prov, w.recorder, w.clock)
		_, err = c.Reconcile(w.ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(p)})
		Expect(err).NotTo(HaveOccurred())
		Expect(changed).To(Equal(1))
		live, deleting := claimsOf(p)
		Expect(live).To(HaveLen(1))
		Expect(deleting).To(HaveLen(1))
		Expect(disruptionReason(deleting[0])).To(Equal(static.ReasonScaledDown))
	})

	It("replaces a drifted node replacement first, once nothing blocks its disruption", func() {
		p := newPool(1)
		reconcileOnce(p)
		live, _ := claimsOf(p)
		Expect(live).To(HaveLen(1))
		old := live[0]
		podOn(launch(old, true), map[string]string{v1.DoNotDisruptAnnotation: "true"})
		Expect(env.Client.Get(w.ctx, client.ObjectKeyFromObject(old), old)).To(Succeed())
		meta.SetStatusCondition(&old.Status.Conditions, metav1.Condition{Type: v1.ConditionDrifted, Status: metav1.ConditionTrue, Reason: "NodeClassDrift"})
		Expect(env.Client.Status().Update(w.ctx, old)).To(Succeed())

		reconcileOnce(p)
		live, _ = claimsOf(p)
		Expect(live).To(HaveLen(2), "the replacement comes first")
		var replacement *v1.NodeClaim
		for _, c := range live {
			if c.Name != old.Name {
				replacement = c
			}
		}
		reconcileOnce(p)
		live, _ = claimsOf(p)
		Expect(live).To(HaveLen(2), "the replacement is counted, not made again, and the old node stays until it has initialized")

		launch(replacement, true)
		reconcileOnce(p)
		live, _ = claimsOf(p)
		Expect(names(live)).To(ConsistOf(old.Name, replacement.Name), "a pod on the old node may not be disrupted")

		var pods corev1.PodList
		Expect(env.Client.List(w.ctx, &pods, client.InNamespace("default"))).To(Succeed())
		for i := range pods.Items {
			if pods.Items[i].Spec.NodeName == old.Status.NodeName {
				pods.Items[i].Annotations = nil
				Expect(env.Client.Update(w.ctx, &pods.Items[i])).To(Succeed())
				Eventually(func() map[string]string {
					var cached corev1.Pod
					Expect(w.client.Get(w.ctx, client.ObjectKeyFromObject(&pods.Items[i]), &cached)).To(Succeed())
					return cached.Annotations
				}).Should(BeEmpty())
			}
		}
		reconcileOnce(p)
		live, deleting := claimsOf(p)
		Expect(names(live)).To(ConsistOf(replacement.Name))
		Expect(names(deleting)).To(ConsistOf(old.Name))
		Expect(disruptionReason(deleting[0])).To(Equal(static.ReasonDrifted))
		Expect(w.events()).To(ContainElement(ContainSubstring("Drifted: NodeClassDrift; its replacement has initialized")))
	})

	It("with limits.nodes leaving no room to replace first, removes a drifted node first and then replaces it", func() {
		p := newPool(1, func(p *v1.NodePool) { p.Spec.Limits = corev1.ResourceList{"nodes": resource.MustParse("1")} })
		reconcileOnce(p)
		live, _ := claimsOf(p)
		Expect(live).To(HaveLen(1))
		old := live[0]
		launch(old, true)
		Expect(env.Client.Get(w.ctx, client.ObjectKeyFromObject(old), old)).To(Succeed())
		meta.SetStatusCondition(&old.Status.Conditions, metav1.Condition{Type: v1.ConditionDrifted, Status: metav1.ConditionTrue, Reason: "AMIDrift"})
		Expect(env.Client.Status().Update(w.ctx, old)).To(Succeed())

		reconcileOnce(p)
		live, deleting := claimsOf(p)
		Expect(live).To(BeEmpty())
		Expect(names(deleting)).To(ConsistOf(old.Name))
		Expect(w.events()).To(ContainElement(ContainSubstring("Drifted: AMIDrift; limits.nodes leaves no room to replace it first")))
		reconcileOnce(p)
		live, _ = claimsOf(p)
		Expect(live).To(HaveLen(1), "its replacement, once the old one no longer counts against the limit")
	})

	It("replaces an expired node replacement first, whatever its pods, and looks again when the next one expires", func() {
		p := newPool(1, func(p *v1.NodePool) {
			p.Spec.Template.Spec.ExpireAfter = v1.NillableDuration{Duration: ptr.To(time.Hour)}
		})
		reconcileOnce(p)
		live, _ := claimsOf(p)
		Expect(live).To(HaveLen(1))
		old := live[0]
		podOn(launch(old, true), map[string]string{v1.DoNotDisruptAnnotation: "true"})
		res := reconcileOnce(p)
		Expect(res.RequeueAfter).To(Equal(time.Minute))

		expires := old.CreationTimestamp.Add(time.Hour)
		w.clock.SetTime(expires.Add(-30 * time.Second))
		res = reconcileOnce(p)
		Expect(res.RequeueAfter).To(Equal(30*time.Second), "woken when it expires")
		live, _ = claimsOf(p)
		Expect(live).To(HaveLen(1))

		// Its replacement must be younger (creation times are in seconds).
		Eventually(func() bool { return time.Now().Truncate(time.Second).After(old.CreationTimestamp.Time) }, 2*time.Second).Should(BeTrue())
		w.clock.SetTime(expires)
		reconcileOnce(p)
		live, _ = claimsOf(p)
		Expect(live).To(HaveLen(2))
		var replacement *v1.NodeClaim
		for _, c := range live {
			if c.Name != old.Name {
				replacement = c
			}
		}
		launch(replacement, false)
		reconcileOnce(p)
		live, _ = claimsOf(p)
		Expect(live).To(HaveLen(2), "the old node stays until its replacement has initialized")
		Expect(env.Client.Get(w.ctx, client.ObjectKeyFromObject(replacement), replacement)).To(Succeed())
		meta.SetStatusCondition(&replacement.Status.Conditions, metav1.Condition{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, Reason: "Initialized"})
		Expect(env.Client.Status().Update(w.ctx, replacement)).To(Succeed())
		reconcileOnce(p)
		live, deleting := claimsOf(p)
		Expect(live).To(HaveLen(1))
		Expect(names(deleting)).To(ConsistOf(old.Name))
		Expect(disruptionReason(deleting[0])).To(Equal(static.ReasonExpired))
	})
})
