package aws_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
)

var _ = Describe("classifying launch errors", func() {
	ice := aws.FleetError{Code: "InsufficientInstanceCapacity", InstanceType: "m5.large", Zone: "us-east-1a", Subnet: "subnet-1"}

	DescribeTable("code by code",
		func(capacityType string, errs []aws.FleetError, outcome aws.Outcome, marks []aws.Unavailable, message string) {
			got := aws.Classify(capacityType, errs)
			Expect(got.Outcome).To(Equal(outcome))
			Expect(got.Unavailable).To(Equal(marks))
			Expect(got.Message).To(ContainSubstring(message))
		},
		Entry("InsufficientInstanceCapacity marks the offering", "spot", []aws.FleetError{ice}, aws.OutcomeUnavailable,
			[]aws.Unavailable{{Scope: aws.ScopeOffering, CapacityType: "spot", InstanceType: "m5.large", Zone: "us-east-1a", Code: "InsufficientInstanceCapacity"}},
			"no capacity for spot m5.large in us-east-1a"),
		Entry("UnfulfillableCapacity marks the offering", "on-demand", []aws.FleetError{{Code: "UnfulfillableCapacity", InstanceType: "c5.large", Zone: "us-east-1b"}}, aws.OutcomeUnavailable,
			[]aws.Unavailable{{Scope: aws.ScopeOffering, CapacityType: "on-demand", InstanceType: "c5.large", Zone: "us-east-1b", Code: "UnfulfillableCapacity"}}, "UnfulfillableCapacity"),
		Entry("a subnet out of addresses marks the subnet", "spot", []aws.FleetError{{Code: "InsufficientFreeAddressesInSubnet", Subnet: "subnet-9"}}, aws.OutcomeUnavailable,
			[]aws.Unavailable{{Scope: aws.ScopeSubnet, Subnet: "subnet-9", Code: "InsufficientFreeAddressesInSubnet"}}, "subnet subnet-9"),
		Entry("MaxSpotInstanceCountExceeded marks all of Spot, once however many overrides failed", "spot",
			[]aws.FleetError{{Code: "MaxSpotInstanceCountExceeded", InstanceType: "m5.large"}, {Code: "MaxSpotInstanceCountExceeded", InstanceType: "c5.large"}}, aws.OutcomeUnavailable,
			[]aws.Unavailable{{Scope: aws.ScopeCapacityType, CapacityType: "spot", Code: "MaxSpotInstanceCountExceeded"}}, "Spot vCPU quota is used up"),
		Entry("a missing Spot service-linked role marks all of Spot and prints the fix", "spot",
			[]aws.FleetError{{Code: "AuthFailure.ServiceLinkedRoleCreationNotPermitted", InstanceType: "m5.large"}}, aws.OutcomeUnavailable,
			[]aws.Unavailable{{Scope: aws.ScopeCapacityType, CapacityType: "spot", Code: "AuthFailure.ServiceLinkedRoleCreationNotPermitted"}},
			"aws iam create-service-linked-role --aws-service-name spot.amazonaws.com"),
		Entry("VcpuLimitExceeded marks the capacity type's family class", "on-demand", []aws.FleetError{{Code: "VcpuLimitExceeded", InstanceType: "p4d.24xlarge"}}, aws.OutcomeUnavailable,
			[]aws.Unavailable{{Scope: aws.ScopeFamilyClass, CapacityType: "on-demand", FamilyClass: "p", Code: "VcpuLimitExceeded"}}, "the p vCPU quota class"),
		Entry("throttling asks for a retry and marks nothing", "spot", []aws.FleetError{{Code: "RequestLimitExceeded"}}, aws.OutcomeRetry, []aws.Unavailable(nil), "retrying with backoff"),
		Entry("a 5xx asks for a retry", "spot", []aws.FleetError{{Code: "InternalError"}}, aws.OutcomeRetry, []aws.Unavailable(nil), "InternalError"),
		Entry("a bad AMI is a configuration error", "spot", []aws.FleetError{{Code: "InvalidAMIID.NotFound"}}, aws.OutcomeConfig, []aws.Unavailable(nil), "check spec.amiSelectorTerms"),
		Entry("a missing permission is a configuration error", "on-demand", []aws.FleetError{{Code: "UnauthorizedOperation"}}, aws.OutcomeConfig, []aws.Unavailable(nil), "grant it ec2:CreateFleet"),
		Entry("an unknown code fails the launch with its message", "spot", []aws.FleetError{{Code: "Weird", Message: "something odd"}}, aws.OutcomeUnknown, []aws.Unavailable(nil), "Weird: something odd"),
		Entry("a fleet that mixes capacity and throttling codes still marks what it learned", "spot",
			[]aws.FleetError{{Code: "RequestLimitExceeded"}, ice}, aws.OutcomeUnavailable,
			[]aws.Unavailable{{Scope: aws.ScopeOffering, CapacityType: "spot", InstanceType: "m5.large", Zone: "us-east-1a", Code: "InsufficientInstanceCapacity"}}, "InsufficientInstanceCapacity"),
		Entry("a fleet that mixes a configuration error with capacity stops on the configuration", "spot",
			[]aws.FleetError{ice, {Code: "InvalidGroup.NotFound"}}, aws.OutcomeConfig,
			[]aws.Unavailable{{Scope: aws.ScopeOffering, CapacityType: "spot", InstanceType: "m5.large", Zone: "us-east-1a", Code: "InsufficientInstanceCapacity"}}, "securityGroupSelectorTerms"),
		Entry("no instance and no error never leaves a launch hanging", "spot", nil, aws.OutcomeUnknown, []aws.Unavailable(nil), "no instance and no error"),
	)

	DescribeTable("knows the vCPU quota classes",
		func(instanceType, class string) { Expect(aws.FamilyClass(instanceType)).To(Equal(class)) },
		Entry(nil, "m5.large", "standard"), Entry(nil, "c7g.xlarge", "standard"), Entry(nil, "t3.micro", "standard"),
		Entry(nil, "p4d.24xlarge", "p"), Entry(nil, "g5.xlarge", "g-vt"), Entry(nil, "vt1.3xlarge", "g-vt"),
		Entry(nil, "x2idn.16xlarge", "x"), Entry(nil, "f1.2xlarge", "f"), Entry(nil, "inf2.xlarge", "inf"),
		Entry(nil, "trn1.2xlarge", "trn"), Entry(nil, "u-6tb1.metal", "high-memory"), Entry(nil, "dl1.24xlarge", "dl"),
	)
})

var _ = Describe("the unavailable-offerings cache", func() {
	var (
		clk   *clocktesting.FakeClock
		cache *aws.UnavailableOfferings
		reg   *prometheus.Registry
	)
	BeforeEach(func() {
		clk = clocktesting.NewFakeClock(time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC))
		reg = prometheus.NewRegistry()
		cache = aws.NewUnavailableOfferings(clk, 3*time.Minute, reg)
	})

	It("marks one offering until the TTL passes", func() {
		cache.Mark(aws.Unavailable{Scope: aws.ScopeOffering, CapacityType: "spot", InstanceType: "m5.large", Zone: "a", Code: "InsufficientInstanceCapacity"})
		Expect(cache.IsUnavailable("m5.large", "a", "spot")).To(BeTrue())
		Expect(cache.IsUnavailable("m5.large", "b", "spot")).To(BeFalse(), "other zones stay open")
		Expect(cache.IsUnavailable("m5.large", "a", "on-demand")).To(BeFalse(), "on-demand stays open")
		clk.Step(3*time.Minute - time.Second)
		Expect(cache.IsUnavailable("m5.large", "a", "spot")).To(BeTrue())
		clk.Step(time.Second)
		Expect(cache.IsUnavailable("m5.large", "a", "spot")).To(BeFalse(), "Spot is tried again after the TTL")
	})

	It("marks all of Spot account-wide", func() {
		cache.Mark(aws.Unavailable{Scope: aws.ScopeCapacityType, CapacityType: "spot", Code: "MaxSpotInstanceCountExceeded"})
		Expect(cache.IsUnavailable("m5.large", "a", "spot")).To(BeTrue())
		Expect(cache.IsUnavailable("c7g.large", "b", "spot")).To(BeTrue())
		Expect(cache.IsUnavailable("m5.large", "a", "on-demand")).To(BeFalse())
	})

	It("marks a vCPU quota class of one capacity type", func() {
		cache.Mark(aws.Unavailable{Scope: aws.ScopeFamilyClass, CapacityType: "on-demand", FamilyClass: "p", Code: "VcpuLimitExceeded"})
		Expect(cache.IsUnavailable("p4d.24xlarge", "a", "on-demand")).To(BeTrue())
		Expect(cache.IsUnavailable("m5.large", "a", "on-demand")).To(BeFalse())
	})

	It("marks subnets", func() {
		cache.Mark(aws.Unavailable{Scope: aws.ScopeSubnet, Subnet: "subnet-1", Code: "InsufficientFreeAddressesInSubnet"})
		Expect(cache.SubnetUnavailable("subnet-1")).To(BeTrue())
		Expect(cache.SubnetUnavailable("subnet-2")).To(BeFalse())
	})

	It("counts what it marks in a metric", func() {
		cache.Mark(aws.Unavailable{Scope: aws.ScopeCapacityType, CapacityType: "spot", Code: "MaxSpotInstanceCountExceeded"})
		cache.Mark(aws.Unavailable{Scope: aws.ScopeCapacityType, CapacityType: "spot", Code: "MaxSpotInstanceCountExceeded"})
		families, err := reg.Gather()
		Expect(err).NotTo(HaveOccurred())
		values := map[string]float64{}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				if m.GetCounter() != nil {
					values[f.GetName()] += m.GetCounter().GetValue()
				} else {
					values[f.GetName()] += m.GetGauge().GetValue()
				}
			}
		}
		Expect(values).To(HaveKeyWithValue("backstop_unavailable_offerings_marked_total", 2.0), "each mark counts")
		Expect(values).To(HaveKeyWithValue("backstop_unavailable_offerings", 1.0), "one mark in force")
	})
})
