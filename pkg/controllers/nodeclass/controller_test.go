package nodeclass_test

import (
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers/nodeclass"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var _ = Describe("the EC2NodeClass status controller", func() {
	ctx := context.Background()

	var sim *ec2sim.Server
	var simURL string
	BeforeEach(func() {
		sim, _, simURL = test.StartEC2Simulator(ec2sim.Config{ClusterTag: "my-cluster",
			InstanceProfiles: []ec2sim.InstanceProfileConfig{
				{Name: "KarpenterNodeInstanceProfile-my-cluster", Role: "KarpenterNodeRole-my-cluster"},
				{Name: "empty-profile"},
				// Someone else's profile under the name Backstop would pick for class "squatted".
				{Name: test.InstanceProfileName("my-cluster", "squatted"), Role: "KarpenterNodeRole-my-cluster"},
			}}, clock.RealClock{})
		mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: test.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
			// A manager per spec registers the same controller again.
			Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
		Expect(err).NotTo(HaveOccurred())
		Expect(nodeclass.New(mgr.GetClient(), test.NewResolver(simURL, "my-cluster"), clock.RealClock{}).Register(mgr)).To(Succeed())
		mctx, cancel := context.WithCancel(ctx)
		DeferCleanup(cancel)
		go func() {
			defer GinkgoRecover()
			Expect(mgr.Start(mctx)).To(Succeed())
		}()
	})

	condition := func(name, kind string) func(Gomega) string {
		return func(g Gomega) string {
			nc := &awsv1.EC2NodeClass{}
			g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: name}, nc)).To(Succeed())
			for _, c := range nc.Status.Conditions {
				if c.Type == kind {
					return string(c.Status) + ": " + c.Message
				}
			}
			return "unset"
		}
	}

	It("resolves the README's EC2NodeClass: subnets by tag, security groups by tag, AMIs by alias", func() {
		objs, err := test.ReadManifests("examples.yaml")
		Expect(err).NotTo(HaveOccurred())
		var nc *unstructured.Unstructured
		for _, o := range objs {
			if o.GetKind() == "EC2NodeClass" {
				nc = o
			}
		}
		Expect(env.Client.Create(ctx, nc)).To(Succeed())
		DeferCleanup(func() { Expect(env.Client.Delete(ctx, nc)).To(Succeed()) })

		Eventually(condition("default", awsv1.ConditionReady)).Should(Equal("True: "))
		got := &awsv1.EC2NodeClass{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Name: "default"}, got)).To(Succeed())
		Expect(got.Status.Subnets).To(HaveLen(3))
		Expect(got.Status.Subnets[0].Zone).To(Equal("us-east-1a"))
		Expect(got.Status.SecurityGroups).To(Equal([]awsv1.SecurityGroup{{ID: "sg-00000001", Name: "my-cluster-node"}}))
		var amis []string
		for _, a := range got.Status.AMIs {
			amis = append(amis, a.Name)
		}
		Expect(amis).To(Equal([]string{
			"amazon-eks-node-al2023-x86_64-standard-1.36-v20261101", "amazon-eks-node-al2023-x86_64-nvidia-1.36-v20261101",
			"amazon-eks-node-al2023-x86_64-neuron-1.36-v20261101", "amazon-eks-node-al2023-arm64-standard-1.36-v20261101",
			"amazon-eks-node-al2023-arm64-nvidia-1.36-v20261101"}), "one image per architecture and variant")
		Expect(got.Status.AMIs[3].Requirements[0].Values).To(Equal([]string{"arm64"}))
		Expect(got.Status.InstanceProfile).To(Equal(test.InstanceProfileName("my-cluster", "default")))
		Expect(sim.InstanceProfiles()).To(HaveKeyWithValue(got.Status.InstanceProfile, "KarpenterNodeRole-my-cluster"), "made, with the role of spec.role")
		Expect(sim.InstanceProfileTags(got.Status.InstanceProfile)).To(Equal(map[string]string{
			"kubernetes.io/cluster/my-cluster": "owned", "eks:eks-cluster-name": "my-cluster", "topology.kubernetes.io/region": "us-east-1",
			"karpenter.k8s.aws/ec2nodeclass": "default"}))
		Expect(got.Finalizers).To(ContainElement(nodeclass.Finalizer))
	})

	It("removes the instance profile it made when the class is deleted, once no NodeClaim uses the class", func() {
		nc := readyClass("goes-away")
		Expect(env.Client.Create(ctx, nc)).To(Succeed())
		Eventually(condition(nc.Name, awsv1.ConditionReady)).Should(Equal("True: "))
		name := test.InstanceProfileName("my-cluster", nc.Name)
		Expect(sim.InstanceProfiles()).To(HaveKey(name))

		claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "uses-goes-away"}, Spec: v1.NodeClaimSpec{
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: nc.Name},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelArchStable, Operator: v1.OpIn, Values: []string{"amd64"}}}}}
		Expect(env.Client.Create(ctx, claim)).To(Succeed())
		Expect(env.Client.Delete(ctx, nc)).To(Succeed())
		Consistently(sim.InstanceProfiles, "2s").Should(HaveKey(name), "a NodeClaim of the class still runs with the profile")
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(nc), &awsv1.EC2NodeClass{})).To(Succeed(), "held by the finalizer")

		Expect(env.Client.Delete(ctx, claim)).To(Succeed())
		Eventually(sim.InstanceProfiles, "30s").ShouldNot(HaveKey(name))
		Eventually(func() bool {
			return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(nc), &awsv1.EC2NodeClass{}))
		}, "10s").Should(BeTrue())
		Expect(sim.InstanceProfiles()).To(HaveKey("KarpenterNodeInstanceProfile-my-cluster"), "profiles it did not make are left alone")
	})

	It("learns a cluster placement group's zone as soon as a NodeClaim of the class has launched, not at the next periodic resolve", func() {
		id, err := sim.AddPlacementGroup(ec2sim.PlacementGroupConfig{Name: "training", Strategy: "cluster"})
		Expect(err).NotTo(HaveOccurred())
		nc := readyClass("training")
		nc.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: ptr.To("training")}
		Expect(env.Client.Create(ctx, nc)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, nc))).To(Succeed()) })
		group := func(g Gomega) awsv1.PlacementGroup {
			got := &awsv1.EC2NodeClass{}
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(nc), got)).To(Succeed())
			g.Expect(got.Status.PlacementGroup).NotTo(BeNil())
			return *got.Status.PlacementGroup
		}
		Eventually(group).Should(Equal(awsv1.PlacementGroup{ID: id, Name: "training", Strategy: "cluster"}))
		Eventually(condition(nc.Name, awsv1.ConditionPlacementGroupReady)).Should(Equal("True: "))

		// Once the class has settled (its own status writes wake it a few
		// times), nothing resolves it again for five minutes.
		version := func() string {
			got := &awsv1.EC2NodeClass{}
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(nc), got)).To(Succeed())
			return got.ResourceVersion
		}
		Eventually(func() bool { before := version(); time.Sleep(time.Second); return version() == before }, "15s").Should(BeTrue())

		// The first instance of the group, and the NodeClaim that launched it.
		instance := sim.LaunchInGroup("m5.large", "us-east-1b", "training")
		claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "in-training"}, Spec: v1.NodeClaimSpec{
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: nc.Name},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelArchStable, Operator: v1.OpIn, Values: []string{"amd64"}}}}}
		Expect(env.Client.Create(ctx, claim)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, claim))).To(Succeed()) })
		Consistently(func(g Gomega) string { return group(g).Zone }, "2s").Should(BeEmpty(), "a NodeClaim that has not launched wakes nothing")
		claim.Status.ProviderID = "aws:///us-east-1b/" + instance
		Expect(env.Client.Status().Update(ctx, claim)).To(Succeed())
		Eventually(func(g Gomega) string { return group(g).Zone }, "10s").Should(Equal("us-east-1b"), "well before the five-minute resolve")
	})

	It("re-reads a class that selects capacity reservations every minute, as Karpenter re-reads their room, and others every five", func() {
		plain, reserving := readyClass("plain"), readyClass("reserving")
		reserving.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{Tags: map[string]string{"team": "ml"}}}
		for _, nc := range []*awsv1.EC2NodeClass{plain, reserving} {
			Expect(env.Client.Create(ctx, nc)).To(Succeed())
			DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, nc))).To(Succeed()) })
			Eventually(condition(nc.Name, awsv1.ConditionReady)).Should(Equal("True: "))
		}
		c := nodeclass.New(env.Client, test.NewResolver(simURL, "my-cluster"), clock.RealClock{})
		after := func(nc *awsv1.EC2NodeClass) func(Gomega) time.Duration {
			return func(g Gomega) time.Duration {
				res, err := c.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(nc)})
				g.Expect(err).NotTo(HaveOccurred())
				return res.RequeueAfter
			}
		}
		Eventually(after(plain)).Should(Equal(5 * time.Minute))
		Eventually(after(reserving)).Should(Equal(time.Minute))
	})

	DescribeTable("says what is wrong with the instance profile, naming the field and the fix",
		func(mutate func(*awsv1.EC2NodeClass), want string) {
			nc := readyClass("profile-" + strings.ToLower(strings.ReplaceAll(CurrentSpecReport().LeafNodeText, " ", "-")))
			mutate(nc)
			Expect(env.Client.Create(ctx, nc)).To(Succeed())
			DeferCleanup(func() { Expect(env.Client.Delete(ctx, nc)).To(Succeed()) })
			Eventually(condition(nc.Name, awsv1.ConditionInstanceProfileReady)).Should(ContainSubstring(want))
			Eventually(condition(nc.Name, awsv1.ConditionReady)).Should(HavePrefix("False: "))
		},
		Entry("role missing", func(nc *awsv1.EC2NodeClass) { nc.Spec.Role = "NoSuchRole" },
			`False: spec.role: role "NoSuchRole" does not exist in this account`),
		Entry("named profile missing", func(nc *awsv1.EC2NodeClass) { nc.Spec.Role = ""; nc.Spec.InstanceProfile = ptr.To("nope") },
			`False: spec.instanceProfile: instance profile "nope" does not exist`),
		Entry("named profile without role", func(nc *awsv1.EC2NodeClass) { nc.Spec.Role = ""; nc.Spec.InstanceProfile = ptr.To("empty-profile") },
			`False: spec.instanceProfile: instance profile "empty-profile" has no role`),
		Entry("a profile of that name Backstop did not make", func(nc *awsv1.EC2NodeClass) { nc.Name = "squatted" },
			"exists but Backstop did not make it for this EC2NodeClass"),
	)

	It("accepts an instance profile of the user's own", func() {
		nc := readyClass("own-profile")
		nc.Spec.Role, nc.Spec.InstanceProfile = "", ptr.To("KarpenterNodeInstanceProfile-my-cluster")
		Expect(env.Client.Create(ctx, nc)).To(Succeed())
		DeferCleanup(func() { Expect(env.Client.Delete(ctx, nc)).To(Succeed()) })
		Eventually(condition(nc.Name, awsv1.ConditionReady)).Should(Equal("True: "))
	})

	It("names the permission when the role may not make instance profiles", func() {
		shipped := sim.Policy()
		sim.SetPolicy(&ec2sim.Policy{Statements: append([]ec2sim.Statement{{Sid: "NoProfiles", Effect: "Deny",
			Actions: []string{"iam:CreateInstanceProfile"}, Resources: []string{"*"}}}, shipped.Statements...)})
		nc := readyClass("denied")
		Expect(env.Client.Create(ctx, nc)).To(Succeed())
		DeferCleanup(func() { Expect(env.Client.Delete(ctx, nc)).To(Succeed()) })
		Eventually(condition(nc.Name, awsv1.ConditionInstanceProfileReady)).Should(And(
			HavePrefix("False: the controller may not iam:CreateInstanceProfile on instance profile my-cluster_"),
			ContainSubstring("AccessDenied, request "), ContainSubstring("charts/backstop/iam/controller-policy.json")))
	})

	It("says which selector matched nothing", func() {
		nc := &awsv1.EC2NodeClass{}
		nc.Name = "nothing-matches"
		nc.Spec = awsv1.EC2NodeClassSpec{
			Role:                       "role",
			AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "other-cluster"}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{ID: "sg-00000001"}},
		}
		Expect(env.Client.Create(ctx, nc)).To(Succeed())
		DeferCleanup(func() { Expect(env.Client.Delete(ctx, nc)).To(Succeed()) })
		Eventually(condition(nc.Name, awsv1.ConditionSubnetsReady)).Should(ContainSubstring("False: no subnet matched spec.subnetSelectorTerms"))
		Eventually(condition(nc.Name, awsv1.ConditionSubnetsReady)).Should(ContainSubstring("other-cluster"))
		Eventually(condition(nc.Name, awsv1.ConditionSecurityGroupsReady)).Should(Equal("True: "))
		Eventually(condition(nc.Name, awsv1.ConditionReady)).Should(HavePrefix("False: no subnet matched"))
	})

})

// readyClass is a class every part of which resolves in the default simulator.
func readyClass(name string) *awsv1.EC2NodeClass {
	nc := &awsv1.EC2NodeClass{}
	nc.Name = name
	nc.Spec = awsv1.EC2NodeClassSpec{
		Role:                       "KarpenterNodeRole-my-cluster",
		AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
		SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
		SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{ID: "sg-00000001"}},
	}
	return nc
}
