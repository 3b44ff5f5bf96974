package operator_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/backstop-sh/backstop/pkg/operator"
)

// evictions counts the eviction requests that reach the API server.
type evictions struct {
	next http.RoundTripper
	n    atomic.Int32
}

func (e *evictions) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/eviction") {
		e.n.Add(1)
	}
	return e.next.RoundTrip(req)
}

var _ = Describe("evictions", func() {
	It("are asked once: a refusal with Retry-After comes back to the drain, which asks again itself", func() {
		ctx := context.Background()
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "evictions-"}}
		Expect(env.Client.Create(ctx, ns)).To(Succeed())
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "guarded", Labels: map[string]string{"app": "guarded"}},
			Spec:       corev1.PodSpec{NodeName: "somewhere", Containers: []corev1.Container{{Name: "c", Image: "c"}}},
		}
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		DeferCleanup(func() { _ = env.Client.Delete(ctx, pod, client.GracePeriodSeconds(0)) })
		// The API server lets a pod that is Pending, or not Ready, go
		// whatever its budget.
		pod.Status.Phase = corev1.PodRunning
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
		// No kube-controller-manager here has counted this budget: the API
		// server refuses the eviction with 429 and Retry-After: 10.
		pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "guarded"},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: pod.Labels}}}
		Expect(env.Client.Create(ctx, pdb)).To(Succeed())

		opts, err := operator.ParseOptions([]string{"--cluster-name=test", "--metrics-bind-address=0", "--health-probe-bind-address=0",
			"--leader-elect=false"}, func(string) string { return "" }, io.Discard)
		Expect(err).NotTo(HaveOccurred())
		counted := &evictions{}
		cfg := rest.CopyConfig(env.Config)
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counted.next = rt; return counted }
		op, err := operator.New(cfg, opts, operator.NewLoggerTo(opts, io.Discard), nil, clock.RealClock{})
		Expect(err).NotTo(HaveOccurred())

		// The bound only keeps a broken build from waiting out ten retries.
		bounded, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		err = op.Manager.GetClient().SubResource("eviction").Create(bounded, pod, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace}})
		Expect(apierrors.IsTooManyRequests(err)).To(BeTrue(), "the refusal itself, not %v", err)
		Expect(counted.n.Load()).To(BeEquivalentTo(1), "client-go did not ask again")
	})
})
