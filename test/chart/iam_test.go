package chart_test

import (
	"encoding/json"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var _ = Describe("the controller's IAM policy as shipped", func() {
	read := func(name string) map[string]any {
		raw, err := os.ReadFile(filepath.Join(test.Root, "charts", "backstop", "cloudformation", name))
		Expect(err).NotTo(HaveOccurred())
		var doc map[string]any
		Expect(yaml.Unmarshal(raw, &doc)).To(Succeed(), "%s is YAML any parser reads", name)
		return doc
	}
	vars := map[string]string{"ClusterName": "prod", "AWS::Region": "eu-west-1", "AWS::Partition": "aws", "AWS::AccountId": "111122223333",
		"NodeRoleName": "KarpenterNodeRole-prod", "InterruptionQueueName": "prod"}

	It("is the same policy in the CloudFormation template as in the JSON file", func() {
		doc := read("controller.yaml")
		sub := doc["Resources"].(map[string]any)["ControllerPolicy"].(map[string]any)["Properties"].(map[string]any)["PolicyDocument"].(map[string]any)["Fn::Sub"].([]any)
		fromStack, err := ec2sim.ParsePolicy([]byte(sub[0].(string)), vars)
		Expect(err).NotTo(HaveOccurred())
		fromFile, err := ec2sim.LoadPolicy(test.ShippedPolicy, vars)
		Expect(err).NotTo(HaveOccurred())
		Expect(fromStack).To(Equal(fromFile))
		Expect(sub[1]).To(And(HaveKey("NodeRoleName"), HaveKey("InterruptionQueueName")), "the placeholders with defaults are given")
	})

	It("grants reading the queue the interruption stack makes, by default", func() {
		queue := read("interruption.yaml")["Resources"].(map[string]any)["InterruptionQueue"].(map[string]any)["Properties"].(map[string]any)["QueueName"]
		Expect(queue).To(Equal(map[string]any{"Ref": "ClusterName"}))
		policy, err := ec2sim.LoadPolicy(test.ShippedPolicy, vars)
		Expect(err).NotTo(HaveOccurred())
		for _, action := range []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueUrl"} {
			ok, why := policy.Allows(ec2sim.Authorization{Action: action, Resource: "arn:aws:sqs:eu-west-1:111122223333:prod"})
			Expect(ok).To(BeTrue(), why)
		}
		ok, _ := policy.Allows(ec2sim.Authorization{Action: "sqs:ReceiveMessage", Resource: "arn:aws:sqs:eu-west-1:111122223333:other"})
		Expect(ok).To(BeFalse(), "another cluster's queue")
	})

	It("is least privilege where it matters: nothing untagged is created, changed or deleted", func() {
		policy, err := ec2sim.LoadPolicy(test.ShippedPolicy, vars)
		Expect(err).NotTo(HaveOccurred())
		for _, a := range []ec2sim.Authorization{
			{Action: "ec2:TerminateInstances", Resource: "arn:aws:ec2:eu-west-1:111122223333:instance/i-1", Context: map[string][]string{}},
			{Action: "ec2:TerminateInstances", Resource: "arn:aws:ec2:eu-west-1:111122223333:instance/i-1",
				Context: map[string][]string{"aws:ResourceTag/kubernetes.io/cluster/other": {"owned"}, "aws:ResourceTag/karpenter.sh/nodepool": {"x"}}},
			{Action: "ec2:CreateFleet", Resource: "arn:aws:ec2:eu-west-1:111122223333:instance/*",
				Context: map[string][]string{"aws:RequestTag/kubernetes.io/cluster/prod": {"owned"}}},
			{Action: "iam:DeleteInstanceProfile", Resource: "arn:aws:iam::111122223333:instance-profile/someone-elses", Context: map[string][]string{}},
			{Action: "iam:PassRole", Resource: "arn:aws:iam::111122223333:role/Admin", Context: map[string][]string{"iam:PassedToService": {"ec2.amazonaws.com"}}},
			{Action: "ssm:GetParameter", Resource: "arn:aws:ssm:eu-west-1:111122223333:parameter/secrets/db", Context: map[string][]string{}},
			{Action: "ec2:DescribeInstances", Resource: "*", Context: map[string][]string{"aws:RequestedRegion": {"us-east-1"}}},
		} {
			ok, _ := policy.Allows(a)
			raw, _ := json.Marshal(a)
			Expect(ok).To(BeFalse(), "%s", raw)
		}
		ok, why := policy.Allows(ec2sim.Authorization{Action: "ec2:TerminateInstances", Resource: "arn:aws:ec2:eu-west-1:111122223333:instance/i-1",
			Context: map[string][]string{"aws:ResourceTag/kubernetes.io/cluster/prod": {"owned"}, "aws:ResourceTag/karpenter.sh/nodepool": {"x"}}})
		Expect(ok).To(BeTrue(), why)
	})
})
