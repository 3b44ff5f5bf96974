package aws_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var _ = Describe("AMIs from SSM", func() {
	ctx := context.Background()
	// images are two AL2023 releases per architecture, the accelerated
	// AL2023 images for x86_64, one Bottlerocket release with its NVIDIA
	// image, an AL2 release with its GPU image, and a team's own image.
	images := []ec2sim.ImageConfig{
		{ID: "ami-al2023-amd-old", Name: "amazon-eks-node-al2023-x86_64-standard-1.36-v20261001", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-10-01T00:00:00.000Z"},
		{ID: "ami-al2023-amd-new", Name: "amazon-eks-node-al2023-x86_64-standard-1.36-v20261101", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-01T00:00:00.000Z"},
		{ID: "ami-al2023-arm-new", Name: "amazon-eks-node-al2023-arm64-standard-1.36-v20261101", Owner: "amazon", Architecture: "arm64", CreationDate: "2026-11-01T00:00:00.000Z"},
		{ID: "ami-al2023-nvidia", Name: "amazon-eks-node-al2023-x86_64-nvidia-1.36-v20261101", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-01T00:00:00.000Z"},
		{ID: "ami-al2023-neuron", Name: "amazon-eks-node-al2023-x86_64-neuron-1.36-v20261101", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-01T00:00:00.000Z"},
		{ID: "ami-br-amd", Name: "bottlerocket-aws-k8s-1.36-x86_64-v1.50.0-abcdef12", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-02T00:00:00.000Z"},
		{ID: "ami-br-nvidia", Name: "bottlerocket-aws-k8s-1.36-nvidia-x86_64-v1.50.0-abcdef12", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-02T00:00:00.000Z"},
		{ID: "ami-al2-amd", Name: "amazon-eks-node-1.36-v20261101", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-01T00:00:00.000Z"},
		{ID: "ami-al2-gpu", Name: "amazon-eks-gpu-node-1.36-v20261101", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-01T00:00:00.000Z"},
		{ID: "ami-team", Name: "team-golden-2026-11", Owner: "123456789012", Architecture: "x86_64", CreationDate: "2026-11-03T00:00:00.000Z"},
	}
	var (
		sim *ec2sim.Server
		url string
	)
	BeforeEach(func() {
		cfg := ec2sim.Config{ClusterTag: "my-cluster", Images: images, SSMParameters: map[string]string{"/team/golden-ami": "ami-team"}}
		shipped, err := ec2sim.LoadPolicy(test.ShippedPolicy, cfg.PolicyVars())
		Expect(err).NotTo(HaveOccurred())
		// The team's own parameters need a grant of their own, as on AWS.
		cfg.Policy = shipped.With(ec2sim.Statement{Sid: "TeamParameters", Effect: "Allow", Actions: []string{"ssm:GetParameter"},
			Resources: []string{"arn:aws:ssm:us-east-1:123456789012:parameter/team/*"}})
		sim, _, url = test.StartEC2Simulator(cfg, clock.RealClock{})
	})
	resolve := func(terms ...awsv1.AMISelectorTerm) (awsv1.EC2NodeClassStatus, *metav1.Condition) {
		class := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: awsv1.EC2NodeClassSpec{
			Role: "KarpenterNodeRole-my-cluster", AMISelectorTerms: terms,
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
		}}
		status, err := test.NewResolver(url, "my-cluster").Resolve(ctx, class)
		Expect(err).NotTo(HaveOccurred())
		return status, meta.FindStatusCondition(status.Conditions, awsv1.ConditionAMIsReady)
	}
	ids := func(s awsv1.EC2NodeClassStatus) []string {
		var out []string
		for _, a := range s.AMIs {
			out = append(out, a.ID)
		}
		return out
	}

	It("resolves an alias through the public parameters, the recommended image per architecture", func() {
		status, cond := resolve(awsv1.AMISelectorTerm{Alias: "al2023@latest"})
		Expect(cond.Status).To(Equal(metav1.ConditionTrue))
		Expect(ids(status)).To(Equal([]string{"ami-al2023-amd-new", "ami-al2023-nvidia", "ami-al2023-neuron", "ami-al2023-arm-new"}),
			"standard, NVIDIA and Neuron for x86_64, standard for arm64 (no arm64 NVIDIA image here)")
		var asked []string
		for _, r := range sim.Requests() {
			Expect(r.Action).NotTo(Equal("ssm:GetParameters"), "Karpenter's published controller policy grants ssm:GetParameter only")
			if r.Action == "ssm:GetParameter" {
				asked = append(asked, r.Params["Name"])
			}
		}
		Expect(asked).To(ConsistOf("/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/arm64/standard/recommended/image_id",
			"/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/x86_64/standard/recommended/image_id",
			"/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/x86_64/nvidia/recommended/image_id",
			"/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/x86_64/neuron/recommended/image_id",
			"/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/arm64/nvidia/recommended/image_id"))
	})

	It("gives each image the requirements of the types that can boot it", func() {
		status, _ := resolve(awsv1.AMISelectorTerm{Alias: "al2023@latest"})
		reqs := map[string]string{}
		for _, a := range status.AMIs {
			var parts []string
			for _, r := range a.Requirements {
				parts = append(parts, fmt.Sprintf("%s %s %v", r.Key, r.Operator, r.Values))
			}
			reqs[a.ID] = strings.Join(parts, "; ")
		}
		Expect(reqs).To(Equal(map[string]string{
			"ami-al2023-amd-new": "kubernetes.io/arch In [amd64]; karpenter.k8s.aws/instance-gpu-count DoesNotExist []; karpenter.k8s.aws/instance-accelerator-count DoesNotExist []",
			"ami-al2023-arm-new": "kubernetes.io/arch In [arm64]; karpenter.k8s.aws/instance-gpu-count DoesNotExist []; karpenter.k8s.aws/instance-accelerator-count DoesNotExist []",
			"ami-al2023-nvidia":  "kubernetes.io/arch In [amd64]; karpenter.k8s.aws/instance-gpu-manufacturer In [nvidia]",
			"ami-al2023-neuron":  "kubernetes.io/arch In [amd64]; karpenter.k8s.aws/instance-accelerator-manufacturer In [aws]",
		}))
	})

	It("uses AL2's one GPU image for NVIDIA and Neuron types alike", func() {
		status, _ := resolve(awsv1.AMISelectorTerm{Alias: "al2@latest"})
		Expect(ids(status)).To(Equal([]string{"ami-al2-amd", "ami-al2-gpu", "ami-al2-gpu"}))
		Expect(status.AMIs[1].Requirements[1].Key).To(Equal("karpenter.k8s.aws/instance-gpu-manufacturer"))
		Expect(status.AMIs[2].Requirements[1].Key).To(Equal("karpenter.k8s.aws/instance-accelerator-manufacturer"))
	})

	It("keeps SSM parameters for their TTL, on the resolver's clock", func() {
		fake := clocktesting.NewFakeClock(time.Now())
		resolver := test.NewResolver(url, "my-cluster")
		resolver.Clock = fake
		class := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: awsv1.EC2NodeClassSpec{
			Role: "KarpenterNodeRole-my-cluster", AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
		}}
		reads := func() int {
			n := 0
			for _, r := range sim.Requests() {
				if r.Action == "ssm:GetParameter" {
					n++
				}
			}
			return n
		}
		for range 3 {
			_, err := resolver.Resolve(ctx, class)
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(reads()).To(Equal(5), "five parameters, read once")
		fake.Step(aws.DefaultParameterTTL)
		_, err := resolver.Resolve(ctx, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(reads()).To(Equal(10), "read again once the TTL is up")
	})

	It("prefers an image that is not deprecated, and warns of deprecated images in use", func() {
		_, _, url := test.StartEC2Simulator(ec2sim.Config{ClusterTag: "my-cluster", Images: []ec2sim.ImageConfig{
			{ID: "ami-old", Name: "team-2026-10", Owner: "self", Architecture: "x86_64", CreationDate: "2026-10-01T00:00:00.000Z"},
			{ID: "ami-new", Name: "team-2026-11", Owner: "self", Architecture: "x86_64", CreationDate: "2026-11-01T00:00:00.000Z", Deprecated: true},
			{ID: "ami-arm", Name: "team-arm-2026-11", Owner: "self", Architecture: "arm64", CreationDate: "2026-11-01T00:00:00.000Z", Deprecated: true},
		}}, clock.RealClock{})
		class := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: awsv1.EC2NodeClassSpec{
			Role: "KarpenterNodeRole-my-cluster", AMISelectorTerms: []awsv1.AMISelectorTerm{{Name: "team-*"}},
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
		}}
		status, err := test.NewResolver(url, "my-cluster").Resolve(ctx, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(ids(status)).To(Equal([]string{"ami-old", "ami-arm"}), "x86_64: the older image, not deprecated; arm64: the only one")
		Expect(status.AMIs[1].Deprecated).To(BeTrue())
		warn := meta.FindStatusCondition(status.Conditions, awsv1.ConditionAMIsDeprecated)
		Expect(warn.Status).To(Equal(metav1.ConditionTrue))
		Expect(warn.Message).To(And(ContainSubstring("team-arm-2026-11 (ami-arm)"), ContainSubstring("select a newer release")))
		Expect(meta.FindStatusCondition(status.Conditions, awsv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue), "a warning, not a failure")
	})

	It("pins an alias version to its release", func() {
		status, _ := resolve(awsv1.AMISelectorTerm{Alias: "al2023@v20261001"})
		Expect(ids(status)).To(Equal([]string{"ami-al2023-amd-old"}), "no arm64 image of that release exists")
	})

	It("resolves Bottlerocket's parameters", func() {
		status, _ := resolve(awsv1.AMISelectorTerm{Alias: "bottlerocket@latest"})
		Expect(ids(status)).To(Equal([]string{"ami-br-amd", "ami-br-nvidia"}))
	})

	It("resolves an ssmParameter term", func() {
		status, cond := resolve(awsv1.AMISelectorTerm{SSMParameter: "/team/golden-ami"})
		Expect(cond.Status).To(Equal(metav1.ConditionTrue))
		Expect(ids(status)).To(Equal([]string{"ami-team"}))
	})

	It("says which parameter does not exist when nothing resolves", func() {
		_, cond := resolve(awsv1.AMISelectorTerm{Alias: "al2023@v20200101"}, awsv1.AMISelectorTerm{SSMParameter: "/team/missing"})
		Expect(cond.Status).To(Equal(metav1.ConditionFalse))
		Expect(cond.Message).To(ContainSubstring("SSM parameter /team/missing does not exist"))
		Expect(cond.Message).To(ContainSubstring("amazon-eks-node-al2023-x86_64-standard-1.36-v20200101/image_id does not exist"))
	})

	It("names the field and the fix for an unknown alias family or a pinned Windows alias", func() {
		_, cond := resolve(awsv1.AMISelectorTerm{Alias: "ubuntu@latest"}, awsv1.AMISelectorTerm{Alias: "windows2022@v1"})
		Expect(cond.Message).To(ContainSubstring("spec.amiSelectorTerms[0].alias ubuntu@latest: unknown family; use al2023, al2, bottlerocket, windows2019 or windows2022"))
		Expect(cond.Message).To(ContainSubstring("spec.amiSelectorTerms[1].alias windows2022@v1: Windows images cannot be pinned"))
	})

	It("turns a denied SSM read into a condition with the permission to add", func() {
		sim.SetFaults(ec2sim.Faults{SSMAccessDenied: true})
		_, cond := resolve(awsv1.AMISelectorTerm{Alias: "al2023@latest"})
		Expect(cond.Status).To(Equal(metav1.ConditionFalse))
		Expect(cond.Message).To(ContainSubstring("allow ssm:GetParameter on arn:aws:ssm:<region>::parameter/aws/service/*"))
	})

	It("answers as SSM does: ParameterNotFound, and at most ten names", func() {
		sim.SetPolicy(ec2sim.AllowAll) // SSM's own semantics; Backstop calls GetParameter only
		client := test.SSMClient(url)
		_, err := client.GetParameter(ctx, &ssm.GetParameterInput{Name: strPtr("/nope")})
		var apiErr smithy.APIError
		Expect(errors.As(err, &apiErr)).To(BeTrue())
		Expect(apiErr.ErrorCode()).To(Equal("ParameterNotFound"))
		names := make([]string, 11)
		for i := range names {
			names[i] = "/team/golden-ami"
		}
		_, err = client.GetParameters(ctx, &ssm.GetParametersInput{Names: names})
		Expect(errors.As(err, &apiErr)).To(BeTrue())
		Expect(apiErr.ErrorCode()).To(Equal("ValidationException"))
		out, err := client.GetParameter(ctx, &ssm.GetParameterInput{Name: strPtr("/aws/service/bottlerocket/aws-k8s-1.36/x86_64/1.50.0/image_id")})
		Expect(err).NotTo(HaveOccurred())
		Expect(*out.Parameter.Value).To(Equal("ami-br-amd"))
	})
})

func strPtr(s string) *string { return &s }

var _ = Describe("capacity reservations", func() {
	ctx := context.Background()
	It("lists the active reservations each term matches, by id, tags, owner or match criteria, and says which id does not exist", func() {
		past := time.Now().Add(-time.Hour)
		cfg := ec2sim.Config{ClusterTag: "my-cluster", CapacityReservations: []ec2sim.CapacityReservationConfig{
			{InstanceType: "m5.large", Zone: "us-east-1a", Count: 2, MatchCriteria: "targeted", Tags: map[string]string{"team": "data"}},
			{InstanceType: "c5.xlarge", Zone: "us-east-1b", Count: 1, Tags: map[string]string{"team": "web"}},
			{InstanceType: "r5.large", Zone: "us-east-1c", Count: 1, Tags: map[string]string{"team": "data"}, EndDate: &past},
		}}
		_, _, url := test.StartEC2Simulator(cfg, clock.RealClock{})
		resolver := test.NewResolver(url, "my-cluster")
		resolver.Reservations = aws.NewReservations(clock.RealClock{})
		resolve := func(terms ...awsv1.CapacityReservationSelectorTerm) awsv1.EC2NodeClassStatus {
			class := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: awsv1.EC2NodeClassSpec{
				Role: "KarpenterNodeRole-my-cluster", AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
				SubnetSelectorTerms:              []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
				SecurityGroupSelectorTerms:       []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
				CapacityReservationSelectorTerms: terms,
			}}
			status, err := resolver.Resolve(ctx, class)
			Expect(err).NotTo(HaveOccurred())
			Expect(meta.IsStatusConditionTrue(status.Conditions, awsv1.ConditionReady)).To(BeTrue(), "reservations are optional capacity")
			Expect(meta.IsStatusConditionTrue(status.Conditions, awsv1.ConditionValidationSucceeded)).To(BeTrue())
			return status
		}
		reservations := func(s awsv1.EC2NodeClassStatus) []string {
			var out []string
			for _, cr := range s.CapacityReservations {
				out = append(out, cr.InstanceType+"/"+cr.AvailabilityZone+"/"+cr.InstanceMatchCriteria)
			}
			return out
		}
		Expect(reservations(resolve(awsv1.CapacityReservationSelectorTerm{Tags: map[string]string{"team": "data"}}))).To(Equal([]string{"m5.large/us-east-1a/targeted"}),
			"the expired one is left out")
		Expect(reservations(resolve(awsv1.CapacityReservationSelectorTerm{Tags: map[string]string{"team": "*"}}))).To(Equal([]string{"m5.large/us-east-1a/targeted", "c5.xlarge/us-east-1b/open"}))
		Expect(reservations(resolve(awsv1.CapacityReservationSelectorTerm{InstanceMatchCriteria: "open"}))).To(Equal([]string{"c5.xlarge/us-east-1b/open"}))
		Expect(reservations(resolve(awsv1.CapacityReservationSelectorTerm{Tags: map[string]string{"team": "web"}, OwnerID: "210987654321"}))).To(BeEmpty(), "another owner's")
		byID := resolve(awsv1.CapacityReservationSelectorTerm{ID: "cr-00000000000000002"}, awsv1.CapacityReservationSelectorTerm{ID: "cr-0000000000000000f"})
		Expect(reservations(byID)).To(Equal([]string{"c5.xlarge/us-east-1b/open"}))
		Expect(byID.CapacityReservations[0].ID).To(Equal("cr-00000000000000002"))
		Expect(meta.FindStatusCondition(byID.Conditions, awsv1.ConditionCapacityReservationsReady).Message).To(ContainSubstring("cr-0000000000000000f does not exist"))
		Expect(resolver.Reservations.Available("cr-00000000000000002")).To(Equal(1), "the count EC2 described")
	})
})
