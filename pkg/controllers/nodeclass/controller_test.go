package nodeclass_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/controllers/nodeclass"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var _ = Describe("the EC2NodeClass status controller", func() {
	ctx := context.Background()

	BeforeEach(func() {
		_, ec2Client, simURL := test.StartEC2Simulator(ec2sim.Config{ClusterTag: "my-cluster"}, clock.RealClock{})
		mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: test.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
			// A manager per spec registers the same controller again.
			Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
		Expect(err).NotTo(HaveOccurred())
		Expect(nodeclass.New(mgr.GetClient(), aws.NewResolver(ec2Client, test.SSMClient(simURL), "my-cluster", "1.36"), clock.RealClock{}).Register(mgr)).To(Succeed())
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
		Expect(got.Status.AMIs).To(HaveLen(2), "one image per architecture")
		Expect(got.Status.AMIs[1].Requirements[0].Values).To(Equal([]string{"arm64"}))
		Expect(got.Status.InstanceProfile).To(Equal("my-cluster_KarpenterNodeRole-my-cluster"))
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
