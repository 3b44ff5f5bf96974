package aws_test

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

// karpenterConditions is a policy with the conditions of Karpenter's
// published v1 controller policy (its getting-started CloudFormation): what a
// user migrating from Karpenter has attached to the controller's role. Only
// the facts — actions, resources, condition keys and values — are its; the
// statement names are ours.
func karpenterConditions(cluster string) *ec2sim.Policy {
	ec2 := func(types ...string) []string {
		var out []string
		for _, t := range types {
			account := "*"
			if t == "image" || t == "snapshot" {
				account = ""
			}
			out = append(out, fmt.Sprintf("arn:aws:ec2:us-east-1:%s:%s/*", account, t))
		}
		return out
	}
	owned := "aws:RequestTag/kubernetes.io/cluster/" + cluster
	ownedRes := "aws:ResourceTag/kubernetes.io/cluster/" + cluster
	allow := func(sid string, actions, resources []string, cond map[string]map[string][]string) ec2sim.Statement {
		if cond == nil {
			cond = map[string]map[string][]string{}
		}
		return ec2sim.Statement{Sid: sid, Effect: "Allow", Actions: actions, Resources: resources, Conditions: cond}
	}
	one := func(v string) []string { return []string{v} }
	profileTags := map[string]map[string][]string{
		"StringEquals": {"aws:ResourceTag/kubernetes.io/cluster/" + cluster: one("owned"), "aws:ResourceTag/topology.kubernetes.io/region": one("us-east-1")},
		"StringLike":   {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": one("*")},
	}
	return &ec2sim.Policy{Statements: []ec2sim.Statement{
		allow("k1", []string{"ec2:RunInstances", "ec2:CreateFleet"}, ec2("image", "snapshot", "security-group", "subnet"), nil),
		allow("k2", []string{"ec2:RunInstances", "ec2:CreateFleet"}, ec2("launch-template"), map[string]map[string][]string{
			"StringEquals": {ownedRes: one("owned")}, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": one("*")}}),
		allow("k3", []string{"ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"},
			ec2("fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request"), map[string]map[string][]string{
				"StringEquals": {owned: one("owned"), "aws:RequestTag/eks:eks-cluster-name": one(cluster)},
				"StringLike":   {"aws:RequestTag/karpenter.sh/nodepool": one("*")}}),
		allow("k4", []string{"ec2:CreateTags"}, ec2("fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request"),
			map[string]map[string][]string{
				"StringEquals": {owned: one("owned"), "aws:RequestTag/eks:eks-cluster-name": one(cluster),
					"ec2:CreateAction": {"RunInstances", "CreateFleet", "CreateLaunchTemplate"}},
				"StringLike": {"aws:RequestTag/karpenter.sh/nodepool": one("*")}}),
		allow("k5", []string{"ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"}, ec2("instance", "launch-template"), map[string]map[string][]string{
			"StringEquals": {ownedRes: one("owned")}, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": one("*")}}),
		allow("k6", []string{"ec2:DescribeAvailabilityZones", "ec2:DescribeImages", "ec2:DescribeInstances", "ec2:DescribeInstanceTypeOfferings",
			"ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplates", "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets"},
			[]string{"*"}, map[string]map[string][]string{"StringEquals": {"aws:RequestedRegion": one("us-east-1")}}),
		allow("k7", []string{"ssm:GetParameter"}, one("arn:aws:ssm:us-east-1::parameter/aws/service/*"), nil),
		allow("k8", []string{"iam:PassRole"}, one("arn:aws:iam::123456789012:role/KarpenterNodeRole-"+cluster),
			map[string]map[string][]string{"StringEquals": {"iam:PassedToService": one("ec2.amazonaws.com")}}),
		allow("k9", []string{"iam:CreateInstanceProfile"}, one("*"), map[string]map[string][]string{
			"StringEquals": {owned: one("owned"), "aws:RequestTag/eks:eks-cluster-name": one(cluster), "aws:RequestTag/topology.kubernetes.io/region": one("us-east-1")},
			"StringLike":   {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": one("*")}}),
		allow("k10", []string{"iam:TagInstanceProfile"}, one("*"), map[string]map[string][]string{
			"StringEquals": {ownedRes: one("owned"), "aws:ResourceTag/topology.kubernetes.io/region": one("us-east-1"),
				owned: one("owned"), "aws:RequestTag/eks:eks-cluster-name": one(cluster), "aws:RequestTag/topology.kubernetes.io/region": one("us-east-1")},
			"StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": one("*"), "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": one("*")}}),
		allow("k11", []string{"iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile"}, one("*"), profileTags),
		allow("k12", []string{"iam:GetInstanceProfile"}, one("*"), nil),
		allow("k13", []string{"eks:DescribeCluster"}, one("arn:aws:eks:us-east-1:123456789012:cluster/"+cluster), nil),
	}}
}

// createdTags reads the tags a recorded request asks to put on what it
// creates, by resource type, from its flat query parameters.
func createdTags(r ec2sim.Request) map[string]map[string]string {
	out := map[string]map[string]string{}
	spec := regexp.MustCompile(`^((?:LaunchTemplateData\.)?TagSpecification\.\d+)\.ResourceType$`)
	for k, rt := range r.Params {
		m := spec.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		if out[rt] == nil {
			out[rt] = map[string]string{}
		}
		for i := 1; ; i++ {
			key, ok := r.Params[fmt.Sprintf("%s.Tag.%d.Key", m[1], i)]
			if !ok {
				break
			}
			out[rt][key] = r.Params[fmt.Sprintf("%s.Tag.%d.Value", m[1], i)]
		}
	}
	if r.Action == "iam:CreateInstanceProfile" {
		out["instance-profile"] = map[string]string{}
		for i := 1; ; i++ {
			key, ok := r.Params[fmt.Sprintf("Tags.member.%d.Key", i)]
			if !ok {
				break
			}
			out["instance-profile"][key] = r.Params[fmt.Sprintf("Tags.member.%d.Value", i)]
		}
	}
	return out
}

// resourceType is what an ARN pattern names: "instance" of
// arn:aws:ec2:…:instance/*; "*" for any.
func resourceType(arn string) string {
	if arn == "*" {
		return "*"
	}
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return "*"
	}
	return strings.SplitN(parts[5], "/", 2)[0]
}

func actionOf(r ec2sim.Request) string {
	if strings.Contains(r.Action, ":") {
		return r.Action
	}
	return "ec2:" + r.Action
}

var _ = Describe("the controller's IAM policy", func() {
	ctx := context.Background()

	// exercise runs everything the controller asks of AWS for a class:
	// resolve it (making its instance profile), launch Spot and On-Demand,
	// terminate, and clean up after the class.
	exercise := func(policy *ec2sim.Policy) *ec2sim.Server {
		sim, _, url := test.StartEC2Simulator(ec2sim.Config{ClusterTag: "my-cluster", Policy: policy, InterruptionQueue: "my-cluster"}, clock.RealClock{})
		class := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: awsv1.EC2NodeClassSpec{
			Role: "KarpenterNodeRole-my-cluster", AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
			Tags:                       map[string]string{"team": "data"},
		}}
		resolver := test.NewResolver(url, "my-cluster")
		var err error
		class.Status, err = resolver.Resolve(ctx, class)
		Expect(err).NotTo(HaveOccurred())
		for _, c := range class.Status.Conditions {
			if c.Type != awsv1.ConditionAMIsDeprecated {
				Expect(c.Status).To(Equal(metav1.ConditionTrue), "%s: %s", c.Type, c.Message)
			}
		}
		launcher := test.NewLaunch(url, "my-cluster", "this-process").Launcher
		for _, ct := range []string{"spot", "on-demand"} {
			claim := policyClaim("policy-"+ct, ct)
			inst, err := launcher.Launch(ctx, claim, class)
			Expect(err).NotTo(HaveOccurred())
			Expect(inst.CapacityType).To(Equal(ct))
			Expect(launcher.Delete(ctx, claim)).To(Succeed())
		}
		Expect(resolver.Cleanup(ctx, class)).To(Succeed())
		Expect(sim.InstanceProfiles()).To(BeEmpty())
		return sim
	}

	DescribeTable("lets the controller do all it does, and nothing it asks for is refused",
		func(policy func() *ec2sim.Policy) {
			sim := exercise(policy())
			asked := 0
			for _, r := range sim.Requests() {
				asked++
				Expect(r.Error).NotTo(Or(Equal("UnauthorizedOperation"), ContainSubstring("AccessDenied")), "%s was refused", r.Action)
			}
			Expect(asked).To(BeNumerically(">", 10))
			for _, inst := range sim.Instances() {
				Expect(inst.State).To(Equal("terminated"))
			}
		},
		Entry("the shipped policy", func() *ec2sim.Policy {
			cfg := ec2sim.Config{ClusterTag: "my-cluster"}
			p, err := ec2sim.LoadPolicy(test.ShippedPolicy, cfg.PolicyVars())
			Expect(err).NotTo(HaveOccurred())
			return p
		}),
		Entry("Karpenter's published policy, for a user migrating", func() *ec2sim.Policy { return karpenterConditions("my-cluster") }),
	)

	It("asks for every tag the shipped policy's conditions demand, on every create request", func() {
		cfg := ec2sim.Config{ClusterTag: "my-cluster"}
		policy, err := ec2sim.LoadPolicy(test.ShippedPolicy, cfg.PolicyVars())
		Expect(err).NotTo(HaveOccurred())
		sim := exercise(ec2sim.AllowAll) // record what is asked, refusing nothing
		seen := map[string]bool{}
		checked := 0
		for _, r := range sim.Requests() {
			for rt, tags := range createdTags(r) {
				seen[rt] = true
				for _, st := range policy.Statements {
					if st.Effect != "Allow" || !containsGlob(st.Actions, actionOf(r)) || !coversType(st.Resources, rt) {
						continue
					}
					for op, keys := range st.Conditions {
						for key, want := range keys {
							tag, ok := strings.CutPrefix(key, "aws:RequestTag/")
							if !ok {
								continue
							}
							checked++
							Expect(tags).To(HaveKey(tag), "%s on %s lacks tag %s (%s: %s)", r.Action, rt, tag, st.Sid, op)
							if op == "StringEquals" {
								Expect(want).To(ContainElement(tags[tag]), "%s on %s: tag %s", r.Action, rt, tag)
							}
						}
					}
				}
			}
		}
		var kinds []string
		for k := range seen {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		Expect(kinds).To(Equal([]string{"fleet", "instance", "instance-profile", "launch-template", "network-interface", "spot-instances-request", "volume"}))
		Expect(checked).To(BeNumerically(">", 20), "the conditions were read and applied")
	})
})

func containsGlob(patterns []string, action string) bool {
	for _, p := range patterns {
		if p == action || p == "*" || (strings.HasSuffix(p, "*") && strings.HasPrefix(action, strings.TrimSuffix(p, "*"))) {
			return true
		}
	}
	return false
}

func coversType(resources []string, rt string) bool {
	for _, r := range resources {
		if t := resourceType(r); t == "*" || t == rt {
			return true
		}
	}
	return false
}

// policyClaim is a NodeClaim of NodePool "batch" this process made.
func policyClaim(name, capacityType string) *v1.NodeClaim {
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{v1.NodePoolLabelKey: "batch"},
			Annotations: map[string]string{cloudprovider.CreatedByAnnotation: "this-process"}},
		Spec: v1.NodeClaimSpec{Requirements: []v1.NodeSelectorRequirementWithMinValues{
			{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"c5.large", "m5.large"}},
			{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{capacityType}},
		}},
	}
}
