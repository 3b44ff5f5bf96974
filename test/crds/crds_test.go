package crds_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
	"github.com/backstop-sh/backstop/test"
)

func nodeClassRef() *v1.NodeClassReference {
	return &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"}
}

var _ = Describe("example manifests", func() {
	for _, file := range []string{"examples.yaml", "karpenter-full.yaml"} {
		It("applies "+file+" unchanged, and server-side dry-run accepts it", func() {
			objs, err := test.ReadManifests(file)
			Expect(err).NotTo(HaveOccurred())
			Expect(objs).NotTo(BeEmpty())
			for _, obj := range objs {
				Expect(c.Create(ctx, obj.DeepCopy(), client.DryRunAll)).To(Succeed(), "dry-run of %s %s", obj.GetKind(), obj.GetName())
				Expect(c.Create(ctx, obj)).To(Succeed(), "%s %s should apply unchanged", obj.GetKind(), obj.GetName())
				DeferCleanup(func() { Expect(client.IgnoreNotFound(c.Delete(ctx, obj))).To(Succeed()) })
			}
		})
	}

	It("keeps every field of the full Karpenter manifest (nothing pruned)", func() {
		objs, err := test.ReadManifests("karpenter-full.yaml")
		Expect(err).NotTo(HaveOccurred())
		for _, obj := range objs {
			sent := obj.DeepCopy()
			Expect(c.Create(ctx, obj)).To(Succeed())
			DeferCleanup(func() { Expect(c.Delete(ctx, obj)).To(Succeed()) })
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(obj.GroupVersionKind())
			Expect(c.Get(ctx, client.ObjectKeyFromObject(obj), got)).To(Succeed())
			expectContains(got.Object["spec"], sent.Object["spec"], "spec")
		}
	})
})

var _ = Describe("the karpenter.k8s.aws label domain", func() {
	It("accepts a requirement on, and a template label of, every karpenter.k8s.aws label Backstop writes on nodes", func() {
		facts, err := catalog.Load()
		Expect(err).NotTo(HaveOccurred())
		keys := map[string]bool{aws.LabelCapacityReservationID: true, aws.LabelCapacityReservationType: true, aws.LabelCapacityReservationInterruptible: true}
		for _, f := range facts {
			it, err := aws.NewInstanceType(f, nil, aws.AllocatableOptions{})
			Expect(err).NotTo(HaveOccurred())
			for k := range it.Requirements {
				if strings.HasPrefix(k, awsv1.Group+"/") {
					keys[k] = true
				}
			}
		}
		Expect(keys).To(HaveKey(aws.LabelInstanceCPUSustainedClockSpeedMHz))
		pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "aws-labels"}, Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{
			ObjectMeta: v1.TemplateMetadata{Labels: map[string]string{}}, Spec: v1.NodeClaimTemplateSpec{NodeClassRef: nodeClassRef()}}}}
		for k := range keys {
			pool.Spec.Template.Spec.Requirements = append(pool.Spec.Template.Spec.Requirements, v1.NodeSelectorRequirementWithMinValues{Key: k, Operator: v1.OpExists})
			pool.Spec.Template.ObjectMeta.Labels[k] = "x"
		}
		Expect(c.Create(ctx, pool, client.DryRunAll)).To(Succeed(), "keys: %v", keys)
	})
})

// expectContains checks that every value in want is in got at the same path.
func expectContains(got, want any, path string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		Expect(ok).To(BeTrue(), "%s should be an object, is %v", path, got)
		for k, v := range w {
			Expect(g).To(HaveKey(k), "%s.%s was pruned or dropped by the schema", path, k)
			expectContains(g[k], v, path+"."+k)
		}
	case []any:
		g, ok := got.([]any)
		Expect(ok).To(BeTrue(), "%s should be a list, is %v", path, got)
		Expect(g).To(HaveLen(len(w)), "%s length", path)
		for i := range w {
			expectContains(g[i], w[i], fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		Expect(fmt.Sprint(got)).To(Equal(fmt.Sprint(want)), "%s", path)
	}
}

var _ = Describe("invalid manifests", func() {
	manifests, err := test.ReadInvalidManifests()
	if err != nil {
		panic(err)
	}

	It("has at least 20 invalid manifests to check", func() {
		Expect(len(manifests)).To(BeNumerically(">=", 20))
	})

	for _, m := range manifests {
		It(fmt.Sprintf("rejects %s, naming %s", m.File, m.Field), func() {
			err := c.Create(ctx, m.Object.DeepCopy(), client.DryRunAll)
			Expect(err).To(HaveOccurred(), "%s should be rejected", m.File)
			GinkgoWriter.Printf("%s -> %v\n", m.File, err)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%s should be rejected as Invalid (422), got %v", m.File, err)
			Expect(err.Error()).To(ContainSubstring(m.Field+": "), "the error should name the field %s", m.Field)
			Expect(err.Error()).To(ContainSubstring(m.Message), "the error should explain the problem")
			// Without dry-run too: nothing is stored.
			Expect(c.Create(ctx, m.Object.DeepCopy())).NotTo(Succeed())
		})
	}
})

var _ = Describe("static NodePools", func() {
	It("keeps replicas, and refuses to turn a static pool into a pod-driven one or back", func() {
		np := &v1.NodePool{
			ObjectMeta: metav1.ObjectMeta{Name: "static-turns"},
			Spec: v1.NodePoolSpec{Replicas: ptr.To[int64](2),
				Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{NodeClassRef: nodeClassRef()}}},
		}
		Expect(c.Create(ctx, np)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, np)).To(Succeed()) })
		Expect(*np.Spec.Replicas).To(Equal(int64(2)))
		np.Spec.Replicas = ptr.To[int64](4)
		Expect(c.Update(ctx, np)).To(Succeed(), "the count may change")
		np.Spec.Replicas = nil
		err := c.Update(ctx, np)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("replicas cannot be set or unset on an existing NodePool"))
	})
})

var _ = Describe("defaults", func() {
	It("fills in expireAfter, the consolidation policy, consolidateAfter and a 10% budget", func() {
		np := &v1.NodePool{
			ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
			Spec:       v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{NodeClassRef: nodeClassRef()}}},
		}
		raw := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "karpenter.sh/v1", "kind": "NodePool",
			"metadata": map[string]any{"name": np.Name},
			"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
				"nodeClassRef": map[string]any{"group": awsv1.Group, "kind": "EC2NodeClass", "name": "default"},
			}}},
		}}
		Expect(c.Create(ctx, raw)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, np)).To(Succeed()) })
		Expect(c.Get(ctx, client.ObjectKeyFromObject(np), np)).To(Succeed())
		Expect(np.Spec.Template.Spec.ExpireAfter.String()).To(Equal("720h"))
		Expect(*np.Spec.Template.Spec.ExpireAfter.Duration).To(Equal(720 * time.Hour))
		Expect(np.Spec.Disruption.ConsolidationPolicy).To(Equal(v1.ConsolidationPolicyWhenEmptyOrUnderutilized))
		Expect(np.Spec.Disruption.ConsolidateAfter.String()).To(Equal("0s"))
		Expect(np.Spec.Disruption.Budgets).To(Equal([]v1.Budget{{Nodes: "10%"}}))
		Expect(np.Spec.Weight).To(BeNil(), "weight has no default; unweighted pools sort last")
	})

	It("keeps expireAfter: Never", func() {
		np := &v1.NodePool{
			ObjectMeta: metav1.ObjectMeta{Name: "never-expires"},
			Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
				NodeClassRef: nodeClassRef(), ExpireAfter: v1.MustParseNillableDuration("Never"),
			}}, Disruption: v1.Disruption{ConsolidateAfter: v1.MustParseNillableDuration("Never")}},
		}
		Expect(c.Create(ctx, np)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, np)).To(Succeed()) })
		got := &v1.NodePool{}
		Expect(c.Get(ctx, client.ObjectKeyFromObject(np), got)).To(Succeed())
		Expect(got.Spec.Template.Spec.ExpireAfter.IsNever()).To(BeTrue())
		Expect(got.Spec.Disruption.ConsolidateAfter.IsNever()).To(BeTrue())
	})

	It("defaults EC2NodeClass metadata options to IMDSv2 with a hop limit of 1", func() {
		nc := &awsv1.EC2NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: "imds-defaults"},
			Spec: awsv1.EC2NodeClassSpec{
				Role:                       "node-role",
				AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
				SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"a": "b"}}},
				SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"a": "b"}}},
			},
		}
		Expect(c.Create(ctx, nc)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, nc)).To(Succeed()) })
		got := &awsv1.EC2NodeClass{}
		Expect(c.Get(ctx, client.ObjectKeyFromObject(nc), got)).To(Succeed())
		Expect(got.Spec.MetadataOptions).To(Equal(&awsv1.MetadataOptions{
			HTTPEndpoint: ptr.To("enabled"), HTTPProtocolIPv6: ptr.To("disabled"),
			HTTPPutResponseHopLimit: ptr.To[int64](1), HTTPTokens: ptr.To("required"),
		}))
	})
})

var _ = Describe("immutability", func() {
	newPool := func(name string) *v1.NodePool {
		np := &v1.NodePool{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{NodeClassRef: nodeClassRef()}}},
		}
		Expect(c.Create(ctx, np)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, np)).To(Succeed()) })
		return np
	}

	It("rejects a change of nodeClassRef.group and nodeClassRef.kind but allows a change of name", func() {
		np := newPool("immutable-ref")
		changed := np.DeepCopy()
		changed.Spec.Template.Spec.NodeClassRef.Group = "example.com"
		err := c.Update(ctx, changed)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("spec.template.spec.nodeClassRef: Invalid value"))
		Expect(err.Error()).To(ContainSubstring("nodeClassRef.group is immutable"))

		changed = np.DeepCopy()
		changed.Spec.Template.Spec.NodeClassRef.Kind = "OtherNodeClass"
		err = c.Update(ctx, changed)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("nodeClassRef.kind is immutable"))

		changed = np.DeepCopy()
		changed.Spec.Template.Spec.NodeClassRef.Name = "other"
		Expect(c.Update(ctx, changed)).To(Succeed(), "the name may change")
	})

	It("rejects any change of a NodeClaim's spec but accepts status and label updates", func() {
		nc := &v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "immutable-claim"},
			Spec: v1.NodeClaimSpec{
				NodeClassRef: nodeClassRef(),
				Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"m5.large"}}},
				Resources:    v1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}},
			},
		}
		Expect(c.Create(ctx, nc)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, nc)).To(Succeed()) })

		changed := nc.DeepCopy()
		changed.Spec.Requirements[0].Values = []string{"m5.xlarge"}
		err := c.Update(ctx, changed)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("spec: Invalid value"))
		Expect(err.Error()).To(ContainSubstring("spec is immutable"))

		nc.Labels = map[string]string{v1.NodePoolLabelKey: "batch"}
		Expect(c.Update(ctx, nc)).To(Succeed(), "metadata may change")
		nc.Status.ProviderID = "aws:///us-east-1a/i-0123456789abcdef0"
		Expect(c.Status().Update(ctx, nc)).To(Succeed(), "status may change")
	})

	It("rejects switching an EC2NodeClass from role to instanceProfile", func() {
		nc := &awsv1.EC2NodeClass{
			ObjectMeta: metav1.ObjectMeta{Name: "role-switch"},
			Spec: awsv1.EC2NodeClassSpec{
				Role:                       "node-role",
				AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
				SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{ID: "subnet-0123"}},
				SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{ID: "sg-0123"}},
			},
		}
		Expect(c.Create(ctx, nc)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, nc)).To(Succeed()) })
		nc.Spec.Role = ""
		nc.Spec.InstanceProfile = ptr.To("profile")
		err := c.Update(ctx, nc)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("changing from 'role' to 'instanceProfile' is not supported"))
	})
})

var _ = Describe("printer columns", func() {
	// table asks the API server for the server-side table kubectl prints.
	table := func(path string) *metav1.Table {
		httpClient, err := rest.HTTPClientFor(env.Config)
		Expect(err).NotTo(HaveOccurred())
		req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(env.Config.Host, "/")+path, nil)
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
		resp, err := httpClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		Expect(resp.StatusCode).To(Equal(http.StatusOK), "GET %s: %s", req.URL, body)
		t := &metav1.Table{}
		Expect(json.Unmarshal(body, t)).To(Succeed())
		return t
	}
	columns := func(t *metav1.Table, wide bool) string {
		var names []string
		for _, c := range t.ColumnDefinitions {
			if (c.Priority > 0) == wide {
				names = append(names, c.Name)
			}
		}
		return strings.Join(names, ",")
	}

	It("shows NodeClass, Nodes, Ready and Age for NodePools, and Weight, CPU and Memory in wide output", func() {
		np := &v1.NodePool{
			ObjectMeta: metav1.ObjectMeta{Name: "columns"},
			Spec:       v1.NodePoolSpec{Weight: ptr.To[int32](42), Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{NodeClassRef: nodeClassRef()}}},
		}
		Expect(c.Create(ctx, np)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, np)).To(Succeed()) })
		np.Status.Nodes = ptr.To[int64](3)
		np.Status.Resources = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("12"), corev1.ResourceMemory: resource.MustParse("48Gi")}
		Expect(c.Status().Update(ctx, np)).To(Succeed())

		t := table("/apis/karpenter.sh/v1/nodepools/columns")
		Expect(columns(t, false)).To(Equal("Name,NodeClass,Nodes,Ready,Age"))
		Expect(columns(t, true)).To(Equal("Weight,CPU,Memory"))
		Expect(t.Rows).To(HaveLen(1))
		cells := map[string]any{}
		for i, col := range t.ColumnDefinitions {
			cells[col.Name] = t.Rows[0].Cells[i]
		}
		Expect(cells).To(HaveKeyWithValue("NodeClass", "default"))
		Expect(cells).To(HaveKeyWithValue("Nodes", BeNumerically("==", 3)))
		Expect(cells).To(HaveKeyWithValue("Weight", BeNumerically("==", 42)))
		Expect(cells).To(HaveKeyWithValue("CPU", "12"))
		Expect(cells).To(HaveKeyWithValue("Memory", "48Gi"))
	})

	It("shows Type, Capacity, Zone, Node, Ready and Age for NodeClaims", func() {
		nc := &v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "columns", Labels: map[string]string{
				corev1.LabelInstanceTypeStable: "m5.large", v1.CapacityTypeLabelKey: v1.CapacityTypeSpot, corev1.LabelTopologyZone: "us-east-1a",
			}},
			Spec: v1.NodeClaimSpec{NodeClassRef: nodeClassRef()},
		}
		Expect(c.Create(ctx, nc)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, nc)).To(Succeed()) })
		nc.Status.NodeName = "ip-10-0-0-1"
		nc.Status.Conditions = []metav1.Condition{{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", LastTransitionTime: metav1.Now()}}
		Expect(c.Status().Update(ctx, nc)).To(Succeed())

		t := table("/apis/karpenter.sh/v1/nodeclaims/columns")
		Expect(columns(t, false)).To(Equal("Name,Type,Capacity,Zone,Node,Ready,Age"))
		Expect(t.Rows[0].Cells[1:6]).To(Equal([]any{"m5.large", "spot", "us-east-1a", "ip-10-0-0-1", "True"}))
	})
})
