package disruption_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/fake"
	"github.com/backstop-sh/backstop/pkg/controllers/disruption"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test"
)

// BenchmarkConsolidationDecision weighs 1,000 underused On-Demand nodes
// (m5.xlarge, 10 pods of 150m each: 37% of their CPU) holding 10,000 pods,
// and decides one consolidation: the snapshot is read once, then every
// candidate group is planned on it. It reports the API calls the decision
// made (none: it only plans) and those of the snapshot (one List per kind,
// from the informer cache in the controller; here from controller-runtime's
// fake client, which copies every object, so the snapshot time is an upper
// bound), what the decision allocates, and the heap in use with the
// fake client's 12,000 stored objects.
//
//	go test ./pkg/controllers/disruption -run '^$' -bench ConsolidationDecision -benchtime 5x
func BenchmarkConsolidationDecision(b *testing.B) {
	const nodes, podsPerNode = 1000, 10
	ctx := context.Background()
	var calls atomic.Int64
	objs, cands := consolidationCluster(nodes, podsPerNode)
	c := crfake.NewClientBuilder().WithScheme(test.Scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			calls.Add(1)
			return c.List(ctx, list, opts...)
		},
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			calls.Add(1)
			return c.Get(ctx, key, obj, opts...)
		},
	}).Build()
	clk := clocktesting.NewFakeClock(time.Now())
	cloud := fake.New(clk)
	cloud.Types = []*scheduling.InstanceType{benchType("m5.xlarge", 4, 0.192), benchType("m5.large", 2, 0.096), benchType("m5.2xlarge", 8, 0.384)}
	prov := provisioning.New(c, events.NewFakeRecorder(1), cloud, clk, provisioning.NewMetrics(prometheus.NewRegistry()), provisioning.Options{
		BatchIdleDuration: time.Second, BatchMaxDuration: 10 * time.Second})
	r := disruption.NewReplacer(c, events.NewFakeRecorder(1), clk, prov, disruption.DefaultReturnOptions(), nil)
	pools := map[string]*v1.NodePool{"default": objs[0].(*v1.NodePool)}

	var snapshot, decide time.Duration
	var snapCalls, decideCalls int64
	var peak, decideAlloc uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start, before := time.Now(), calls.Load()
		base, err := prov.MoveBase(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		mid, between := time.Now(), calls.Load()
		d := r.Decide(base, cands, map[string]int{"default": nodes}, map[string]bool{}, pools)
		snapshot += mid.Sub(start)
		decide += time.Since(mid)
		runtime.ReadMemStats(&m1)
		decideAlloc += m1.TotalAlloc - m0.TotalAlloc
		snapCalls += between - before
		decideCalls += calls.Load() - between
		if d == nil {
			b.Fatal("no consolidation found")
		}
		if i == 0 {
			b.Logf("decision: %s", d)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	n := float64(b.N)
	b.ReportMetric(decide.Seconds()*1000/n, "decide-ms/op")
	b.ReportMetric(snapshot.Seconds()*1000/n, "snapshot-ms/op")
	b.ReportMetric(float64(decideCalls)/n, "decide-api-calls/op")
	b.ReportMetric(float64(snapCalls)/n, "snapshot-lists/op")
	b.ReportMetric(float64(peak)/(1<<20), "heap-inuse-MiB")
	b.ReportMetric(float64(decideAlloc)/n/(1<<20), "decide-alloc-MiB/op")
	if decideCalls != 0 {
		b.Fatalf("the decision made %d API calls; it must only plan", decideCalls)
	}
}

func benchType(name string, cpu int64, price float64) *scheduling.InstanceType {
	return &scheduling.InstanceType{
		Name: name,
		Requirements: scheduling.NewRequirements(
			scheduling.MustRequirement(corev1.LabelInstanceTypeStable, v1.OpIn, name),
			scheduling.MustRequirement(corev1.LabelArchStable, v1.OpIn, "amd64"),
			scheduling.MustRequirement(corev1.LabelOSStable, v1.OpIn, "linux")),
		Capacity: scheduling.Resources{CPU: cpu * 1000, Memory: cpu * 4 << 30, Pods: 58},
		Offerings: []scheduling.Offering{
			{Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand, Price: price, Available: true},
			{Zone: "zone-b", CapacityType: v1.CapacityTypeOnDemand, Price: price, Available: true},
		},
	}
}

// consolidationCluster is one On-Demand pool of n initialized m5.xlarge
// nodes with podsPerNode pods each, as API objects, and the candidates.
func consolidationCluster(n, podsPerNode int) ([]client.Object, []disruption.Candidate) {
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: v1.NodePoolSpec{
		Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{v1.CapacityTypeOnDemand}}},
		}},
		Disruption: v1.Disruption{ConsolidationPolicy: v1.ConsolidationPolicyWhenEmptyOrUnderutilized, ConsolidateAfter: v1.MustParseNillableDuration("0s")},
	}}
	objs := []client.Object{pool}
	var cands []disruption.Candidate
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("node-%04d", i)
		zone := []string{"zone-a", "zone-b"}[i%2]
		labels := map[string]string{v1.NodePoolLabelKey: "default", v1.CapacityTypeLabelKey: v1.CapacityTypeOnDemand,
			corev1.LabelInstanceTypeStable: "m5.xlarge", corev1.LabelTopologyZone: zone, corev1.LabelArchStable: "amd64",
			corev1.LabelOSStable: "linux", corev1.LabelHostname: name}
		claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, CreationTimestamp: metav1.Now()},
			Spec:   v1.NodeClaimSpec{NodeClassRef: pool.Spec.Template.Spec.NodeClassRef},
			Status: v1.NodeClaimStatus{NodeName: name, ProviderID: "fake:///" + name}}
		meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, Reason: "Initialized"})
		alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3900m"), corev1.ResourceMemory: resource.MustParse("15Gi"), corev1.ResourcePods: resource.MustParse("58")}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{ProviderID: claim.Status.ProviderID},
			Status: corev1.NodeStatus{Allocatable: alloc, Capacity: alloc, Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
		cand := disruption.Candidate{Claim: claim, Node: node}
		objs = append(objs, claim, node)
		for j := 0; j < podsPerNode; j++ {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("%s-pod-%02d", name, j), UID: types.UID(fmt.Sprintf("%s-%02d", name, j)),
					Labels:          map[string]string{"app": fmt.Sprintf("app-%d", j)},
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: fmt.Sprintf("app-%d", j), UID: "rs", Controller: ptr.To(true)}}},
				Spec: corev1.PodSpec{NodeName: name, Containers: []corev1.Container{{Name: "app", Image: "app", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("150m"), corev1.ResourceMemory: resource.MustParse("512Mi")}}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning},
			}
			objs = append(objs, pod)
			cand.Pods = append(cand.Pods, pod)
		}
		cands = append(cands, cand)
	}
	return objs, cands
}
