package aws_test

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var _ = Describe("AMIs from SSM", func() {
	ctx := context.Background()
	// images are two AL2023 releases per architecture, one Bottlerocket
	// release, and a team's own image.
	images := []ec2sim.ImageConfig{
		{ID: "ami-al2023-amd-old", Name: "amazon-eks-node-al2023-x86_64-standard-1.36-v20261001", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-10-01T00:00:00.000Z"},
		{ID: "ami-al2023-amd-new", Name: "amazon-eks-node-al2023-x86_64-standard-1.36-v20261101", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-01T00:00:00.000Z"},
		{ID: "ami-al2023-arm-new", Name: "amazon-eks-node-al2023-arm64-standard-1.36-v20261101", Owner: "amazon", Architecture: "arm64", CreationDate: "2026-11-01T00:00:00.000Z"},
		{ID: "ami-br-amd", Name: "bottlerocket-aws-k8s-1.36-x86_64-v1.50.0-abcdef12", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-02T00:00:00.000Z"},
		{ID: "ami-team", Name: "team-golden-2026-11", Owner: "123456789012", Architecture: "x86_64", CreationDate: "2026-11-03T00:00:00.000Z"},
	}
	var (
		sim *ec2sim.Server
		url string
	)
	BeforeEach(func() {
		sim, _, url = test.StartEC2Simulator(ec2sim.Config{ClusterTag: "my-cluster", Images: images,
			SSMParameters: map[string]string{"/team/golden-ami": "ami-team"}}, clock.RealClock{})
	})
	resolve := func(terms ...awsv1.AMISelectorTerm) (awsv1.EC2NodeClassStatus, *metav1.Condition) {
		class := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: awsv1.EC2NodeClassSpec{
			Role: "r", AMISelectorTerms: terms,
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
		}}
		status, err := aws.NewResolver(test.EC2Client(url), test.SSMClient(url), "my-cluster", "1.36").Resolve(ctx, class)
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
		Expect(ids(status)).To(Equal([]string{"ami-al2023-amd-new", "ami-al2023-arm-new"}))
		var asked []string
		for _, r := range sim.Requests() {
			if r.Action == "ssm:GetParameters" {
				asked = append(asked, r.Params["Names"])
			}
		}
		Expect(asked).To(ConsistOf("/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/arm64/standard/recommended/image_id,/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/x86_64/standard/recommended/image_id"))
	})

	It("pins an alias version to its release", func() {
		status, _ := resolve(awsv1.AMISelectorTerm{Alias: "al2023@v20261001"})
		Expect(ids(status)).To(Equal([]string{"ami-al2023-amd-old"}), "no arm64 image of that release exists")
	})

	It("resolves Bottlerocket's parameters", func() {
		status, _ := resolve(awsv1.AMISelectorTerm{Alias: "bottlerocket@latest"})
		Expect(ids(status)).To(Equal([]string{"ami-br-amd"}))
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
		Expect(cond.Message).To(ContainSubstring("allow ssm:GetParameter and ssm:GetParameters on arn:aws:ssm:<region>::parameter/aws/service/*"))
	})

	It("answers as SSM does: ParameterNotFound, and at most ten names", func() {
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
