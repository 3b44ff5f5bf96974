package operator_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/operator"
)

var _ = Describe("the pods a plan reads", func() {
	It("are the informer cache's own objects, not copies", func() {
		ctx, cancel := context.WithCancel(context.Background())
		DeferCleanup(cancel)
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "pods-"}}
		Expect(env.Client.Create(ctx, ns)).To(Succeed())
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}}}
		Expect(env.Client.Create(ctx, pod)).To(Succeed())

		c, err := cache.New(env.Config, cache.Options{Scheme: scheme.Scheme})
		Expect(err).NotTo(HaveOccurred())
		listPods, err := operator.CachedPods(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		go func() { _ = c.Start(ctx) }()
		Expect(c.WaitForCacheSync(ctx)).To(BeTrue())

		find := func(pods []*corev1.Pod) *corev1.Pod {
			for _, p := range pods {
				if p.Namespace == ns.Name && p.Name == "web" {
					return p
				}
			}
			return nil
		}
		var first *corev1.Pod
		Eventually(func(g Gomega) {
			pods, err := listPods(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			first = find(pods)
			g.Expect(first).NotTo(BeNil())
		}, 10*time.Second).Should(Succeed())
		again, err := listPods(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(find(again)).To(BeIdenticalTo(first), "the same object both times: nothing copied")

		copied, err := provisioning.ReadPods(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(find(copied)).To(Equal(first), "the reader sees the same pod")
		Expect(find(copied)).NotTo(BeIdenticalTo(first), "in a list of its own")
	})
})
