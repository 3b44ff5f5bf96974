package ec2sim_test

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var _ = Describe("the simulated IAM", func() {
	ctx := context.Background()
	var (
		client *iam.Client
		ec2c   *ec2.Client
	)
	BeforeEach(func() {
		var url string
		_, ec2c, url = test.StartEC2Simulator(ec2sim.Config{ClusterTag: "c", Policy: ec2sim.AllowAll}, clock.RealClock{})
		client = test.IAMClient(url)
	})

	It("makes, tags, reads and deletes instance profiles as IAM does, through the SDK", func() {
		out, err := client.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String("p"),
			Tags: []iamtypes.Tag{{Key: aws.String("a"), Value: aws.String("1")}}})
		Expect(err).NotTo(HaveOccurred())
		Expect(aws.ToString(out.InstanceProfile.Arn)).To(Equal("arn:aws:iam::123456789012:instance-profile/p"))
		_, err = client.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String("p")})
		Expect(apiCode(err)).To(Equal("EntityAlreadyExists"))

		_, err = client.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String("p"), RoleName: aws.String("nope")})
		Expect(apiCode(err)).To(Equal("NoSuchEntity"), "the role must exist")
		_, err = client.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String("p"), RoleName: aws.String("KarpenterNodeRole-c")})
		Expect(err).NotTo(HaveOccurred())
		_, err = client.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String("p"), RoleName: aws.String("KarpenterNodeRole-c")})
		Expect(apiCode(err)).To(Equal("LimitExceeded"), "one role per profile")
		_, err = client.TagInstanceProfile(ctx, &iam.TagInstanceProfileInput{InstanceProfileName: aws.String("p"), Tags: []iamtypes.Tag{{Key: aws.String("b"), Value: aws.String("2")}}})
		Expect(err).NotTo(HaveOccurred())

		got, err := client.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String("p")})
		Expect(err).NotTo(HaveOccurred())
		Expect(got.InstanceProfile.Roles).To(HaveLen(1))
		Expect(aws.ToString(got.InstanceProfile.Roles[0].RoleName)).To(Equal("KarpenterNodeRole-c"))
		Expect(got.InstanceProfile.Tags).To(HaveLen(2))

		_, err = client.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: aws.String("p")})
		Expect(apiCode(err)).To(Equal("DeleteConflict"), "roles first")
		_, err = client.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: aws.String("p"), RoleName: aws.String("KarpenterNodeRole-c")})
		Expect(err).NotTo(HaveOccurred())
		_, err = client.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: aws.String("p")})
		Expect(err).NotTo(HaveOccurred())
		_, err = client.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String("p")})
		Expect(apiCode(err)).To(Equal("NoSuchEntity"))
		_, err = client.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String("bad name")})
		Expect(apiCode(err)).To(Equal("ValidationError"))
	})

	It("launches nothing from a template whose instance profile does not exist", func() {
		profileTemplate(ctx, ec2c, "missing")
		out := launchFromTemplate(ctx, ec2c)
		Expect(out.Instances).To(BeEmpty())
		Expect(out.Errors).NotTo(BeEmpty())
		Expect(aws.ToString(out.Errors[0].ErrorCode)).To(Equal("InvalidParameterValue"))
		Expect(aws.ToString(out.Errors[0].ErrorMessage)).To(ContainSubstring("Invalid IAM Instance Profile name"))
	})

	It("lets EC2 see a new instance profile, and a role newly added to it, only after IAM's propagation delay", func() {
		clk := clocktesting.NewFakeClock(time.Now())
		_, ec2c, url := test.StartEC2Simulator(ec2sim.Config{ClusterTag: "c", Policy: ec2sim.AllowAll, IAMPropagation: ec2sim.Duration{Duration: 5 * time.Second}}, clk)
		client := test.IAMClient(url)
		_, err := client.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String("fresh")})
		Expect(err).NotTo(HaveOccurred())
		profileTemplate(ctx, ec2c, "fresh")
		launch := func() (int, string) {
			out := launchFromTemplate(ctx, ec2c)
			if len(out.Errors) > 0 {
				return len(out.Instances), aws.ToString(out.Errors[0].ErrorMessage)
			}
			return len(out.Instances), ""
		}
		clk.Step(4 * time.Second)
		n, msg := launch()
		Expect(n).To(BeZero())
		Expect(msg).To(ContainSubstring("Invalid IAM Instance Profile name"), "4 s after its creation")
		clk.Step(time.Second)
		Expect(launch()).To(Equal(1), "5 s after")

		_, err = client.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String("fresh"), RoleName: aws.String("KarpenterNodeRole-c")})
		Expect(err).NotTo(HaveOccurred())
		n, _ = launch()
		Expect(n).To(BeZero(), "its new role has not reached EC2 either")
		clk.Step(5 * time.Second)
		Expect(launch()).To(Equal(1))
	})

	It("refuses a tag specification for a resource type the operation does not create", func() {
		_, err := ec2c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("lt2"),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-00002000")},
			TagSpecifications:  []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}}}})
		Expect(apiCode(err)).To(Equal("InvalidParameterValue"))
	})
})

var _ = Describe("the simulated IAM policy evaluation", func() {
	allow := func(p *ec2sim.Policy, action, resource string, ctx map[string][]string) bool {
		ok, _ := p.Allows(ec2sim.Authorization{Action: action, Resource: resource, Context: ctx})
		return ok
	}

	It("matches actions case-insensitively with wildcards, resources by glob, and lets Deny win", func() {
		p, err := ec2sim.ParsePolicy([]byte(`{"Version":"2012-10-17","Statement":[
			{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"},
			{"Effect":"Allow","Action":["ec2:TerminateInstances"],"Resource":"arn:aws:ec2:*:*:instance/i-?"},
			{"Effect":"Deny","Action":"ec2:DescribeImages","Resource":"*"}]}`), nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(allow(p, "EC2:describeinstances", "*", nil)).To(BeTrue())
		Expect(allow(p, "ec2:DescribeImages", "*", nil)).To(BeFalse(), "an explicit deny wins")
		Expect(allow(p, "ec2:TerminateInstances", "arn:aws:ec2:us-east-1:1:instance/i-1", nil)).To(BeTrue())
		Expect(allow(p, "ec2:TerminateInstances", "arn:aws:ec2:us-east-1:1:instance/i-12", nil)).To(BeFalse())
		Expect(allow(p, "ec2:RunInstances", "*", nil)).To(BeFalse(), "nothing allows it")
	})

	It("evaluates conditions as IAM does: ANDed keys, ORed values, missing keys, IfExists, ForAllValues", func() {
		p, err := ec2sim.ParsePolicy([]byte(`{"Version":"2012-10-17","Statement":[
			{"Effect":"Allow","Action":"ec2:CreateTags","Resource":"*","Condition":{
				"StringEquals":{"aws:RequestTag/team":["a","b"],"aws:RequestTag/env":"prod"},
				"StringLikeIfExists":{"aws:RequestTag/owner":"j*"},
				"ForAllValues:StringEquals":{"aws:TagKeys":["team","env","owner"]}}}]}`), nil)
		Expect(err).NotTo(HaveOccurred())
		ctx := func(kv ...string) map[string][]string {
			out := map[string][]string{}
			var keys []string
			for i := 0; i < len(kv); i += 2 {
				out["aws:RequestTag/"+kv[i]] = []string{kv[i+1]}
				keys = append(keys, kv[i])
			}
			out["aws:TagKeys"] = keys
			return out
		}
		Expect(allow(p, "ec2:CreateTags", "*", ctx("team", "b", "env", "prod"))).To(BeTrue())
		Expect(allow(p, "ec2:CreateTags", "*", ctx("team", "c", "env", "prod"))).To(BeFalse(), "no value matches")
		Expect(allow(p, "ec2:CreateTags", "*", ctx("team", "a"))).To(BeFalse(), "a missing key fails")
		Expect(allow(p, "ec2:CreateTags", "*", ctx("team", "a", "env", "prod", "owner", "jo"))).To(BeTrue())
		Expect(allow(p, "ec2:CreateTags", "*", ctx("team", "a", "env", "prod", "owner", "mo"))).To(BeFalse())
		Expect(allow(p, "ec2:CreateTags", "*", ctx("team", "a", "env", "prod", "other", "x"))).To(BeFalse(), "a tag key not in the list")
	})

	It("refuses what it cannot evaluate rather than misread it", func() {
		_, err := ec2sim.ParsePolicy([]byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*",
			"Condition":{"NumericLessThan":{"aws:MultiFactorAuthAge":"3600"}}}]}`), nil)
		Expect(err).To(MatchError(ContainSubstring("NumericLessThan is not simulated")))
		_, err = ec2sim.ParsePolicy([]byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"arn:${Nope}"}]}`), nil)
		Expect(err).To(MatchError(ContainSubstring("${Nope} has no value")))
	})
})

// profileTemplate makes launch template lt naming the instance profile.
func profileTemplate(ctx context.Context, ec2c *ec2.Client, profile string) {
	_, err := ec2c.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("lt"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-00002000"),
			IamInstanceProfile: &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String(profile)}}})
	Expect(err).NotTo(HaveOccurred(), "EC2 does not check the profile until it launches")
}

// launchFromTemplate asks an instant fleet of one On-Demand m5.large from lt.
func launchFromTemplate(ctx context.Context, ec2c *ec2.Client) *ec2.CreateFleetOutput {
	out, err := ec2c.CreateFleet(ctx, &ec2.CreateFleetInput{Type: ec2types.FleetTypeInstant,
		LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: aws.String("lt"), Version: aws.String("$Latest")},
			Overrides:                   []ec2types.FleetLaunchTemplateOverridesRequest{{InstanceType: ec2types.InstanceTypeM5Large, AvailabilityZone: aws.String("us-east-1a")}},
		}},
		TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{TotalTargetCapacity: aws.Int32(1), DefaultTargetCapacityType: ec2types.DefaultTargetCapacityTypeOnDemand}})
	Expect(err).NotTo(HaveOccurred())
	return out
}
