package ec2sim_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	"github.com/aws/smithy-go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/clock"

	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

func TestEC2Sim(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "EC2 simulator")
}

func apiCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

var _ = Describe("the EC2 simulator", func() {
	var (
		sim      *ec2sim.Server
		client   *ec2.Client
		ctx      = context.Background()
		endpoint string
	)

	BeforeEach(func() {
		sim, client, endpoint = test.StartEC2Simulator(ec2sim.Config{Policy: ec2sim.AllowAll}, clock.RealClock{})
	})

	launchTemplate := func() string {
		out, err := client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String("backstop/default/abc"),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-00002000")},
		})
		Expect(err).NotTo(HaveOccurred())
		return aws.ToString(out.LaunchTemplate.LaunchTemplateName)
	}

	fleet := func(lt string, capacityType ec2types.DefaultTargetCapacityType, token string, types ...string) (*ec2.CreateFleetOutput, error) {
		var overrides []ec2types.FleetLaunchTemplateOverridesRequest
		for _, t := range types {
			for _, subnet := range []string{"subnet-00001000", "subnet-00001001"} {
				overrides = append(overrides, ec2types.FleetLaunchTemplateOverridesRequest{InstanceType: ec2types.InstanceType(t), SubnetId: aws.String(subnet)})
			}
		}
		in := &ec2.CreateFleetInput{
			Type: ec2types.FleetTypeInstant,
			LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
				LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
				Overrides:                   overrides,
			}},
			TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{TotalTargetCapacity: aws.Int32(1), DefaultTargetCapacityType: capacityType},
			SpotOptions:                 &ec2types.SpotOptionsRequest{AllocationStrategy: ec2types.SpotAllocationStrategyPriceCapacityOptimized},
			OnDemandOptions:             &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyLowestPrice},
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{
				{Key: aws.String("karpenter.sh/nodeclaim"), Value: aws.String("batch-abc")}, {Key: aws.String("kubernetes.io/cluster/local"), Value: aws.String("owned")},
			}}},
		}
		if token != "" {
			in.ClientToken = aws.String(token)
		}
		return client.CreateFleet(ctx, in)
	}

	It("reserves capacity, describes it by id and filter, and cancels it, through the SDK as EC2 does", func() {
		out, err := client.CreateCapacityReservation(ctx, &ec2.CreateCapacityReservationInput{InstanceType: aws.String("m5.large"),
			InstancePlatform: ec2types.CapacityReservationInstancePlatformLinuxUnix, AvailabilityZone: aws.String("us-east-1a"), InstanceCount: aws.Int32(3),
			InstanceMatchCriteria: ec2types.InstanceMatchCriteriaTargeted,
			TagSpecifications:     []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeCapacityReservation, Tags: []ec2types.Tag{{Key: aws.String("team"), Value: aws.String("ml")}}}}})
		Expect(err).NotTo(HaveOccurred())
		id := aws.ToString(out.CapacityReservation.CapacityReservationId)
		Expect(id).To(MatchRegexp(`^cr-[0-9a-f]+$`))
		Expect(aws.ToInt32(out.CapacityReservation.AvailableInstanceCount)).To(Equal(int32(3)))
		_, err = client.CreateCapacityReservation(ctx, &ec2.CreateCapacityReservationInput{InstanceType: aws.String("m5.large"),
			InstancePlatform: ec2types.CapacityReservationInstancePlatformLinuxUnix, AvailabilityZone: aws.String("eu-west-1a"), InstanceCount: aws.Int32(1)})
		Expect(err).To(MatchError(ContainSubstring("InvalidParameterValue")), "a zone the account does not have")

		describe := func(in *ec2.DescribeCapacityReservationsInput) ([]string, error) {
			out, err := client.DescribeCapacityReservations(ctx, in)
			if err != nil {
				return nil, err
			}
			var ids []string
			for _, cr := range out.CapacityReservations {
				ids = append(ids, aws.ToString(cr.CapacityReservationId)+"/"+string(cr.State))
			}
			return ids, nil
		}
		filter := func(name, value string) ec2types.Filter {
			return ec2types.Filter{Name: aws.String(name), Values: []string{value}}
		}
		Expect(describe(&ec2.DescribeCapacityReservationsInput{CapacityReservationIds: []string{id}})).To(Equal([]string{id + "/active"}))
		Expect(describe(&ec2.DescribeCapacityReservationsInput{Filters: []ec2types.Filter{filter("tag:team", "ml"), filter("instance-match-criteria", "targeted")}})).To(Equal([]string{id + "/active"}))
		Expect(describe(&ec2.DescribeCapacityReservationsInput{Filters: []ec2types.Filter{filter("instance-match-criteria", "open")}})).To(BeEmpty())
		_, err = describe(&ec2.DescribeCapacityReservationsInput{Filters: []ec2types.Filter{filter("color", "blue")}})
		Expect(err).To(MatchError(ContainSubstring("InvalidParameterValue")), "a filter EC2 does not know")
		_, err = describe(&ec2.DescribeCapacityReservationsInput{CapacityReservationIds: []string{"cr-0000000000000ffff"}})
		Expect(err).To(MatchError(ContainSubstring("InvalidCapacityReservationId.NotFound")))

		_, err = client.CancelCapacityReservation(ctx, &ec2.CancelCapacityReservationInput{CapacityReservationId: aws.String(id)})
		Expect(err).NotTo(HaveOccurred())
		Expect(describe(&ec2.DescribeCapacityReservationsInput{Filters: []ec2types.Filter{filter("state", "active")}})).To(BeEmpty())
		Expect(describe(&ec2.DescribeCapacityReservationsInput{CapacityReservationIds: []string{id}})).To(Equal([]string{id + "/cancelled"}))
	})

	It("keeps placement groups as EC2 does: created, described by name, id and filter, launched into, refused while in use", func() {
		created, err := client.CreatePlacementGroup(ctx, &ec2.CreatePlacementGroupInput{GroupName: aws.String("kafka"), Strategy: ec2types.PlacementStrategyPartition, PartitionCount: aws.Int32(2)})
		Expect(err).NotTo(HaveOccurred())
		id := aws.ToString(created.PlacementGroup.GroupId)
		Expect(id).To(MatchRegexp(`^pg-[0-9a-z]+$`), "the EC2NodeClass pattern for ids")
		_, err = client.CreatePlacementGroup(ctx, &ec2.CreatePlacementGroupInput{GroupName: aws.String("training"), Strategy: ec2types.PlacementStrategyCluster})
		Expect(err).NotTo(HaveOccurred())

		byName, err := client.DescribePlacementGroups(ctx, &ec2.DescribePlacementGroupsInput{GroupNames: []string{"kafka"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(byName.PlacementGroups).To(HaveLen(1))
		g := byName.PlacementGroups[0]
		Expect(aws.ToString(g.GroupId)).To(Equal(id))
		Expect(g.Strategy).To(Equal(ec2types.PlacementStrategyPartition))
		Expect(aws.ToInt32(g.PartitionCount)).To(BeEquivalentTo(2))
		Expect(g.State).To(Equal(ec2types.PlacementGroupStateAvailable))
		byID, err := client.DescribePlacementGroups(ctx, &ec2.DescribePlacementGroupsInput{GroupIds: []string{id}})
		Expect(err).NotTo(HaveOccurred())
		Expect(aws.ToString(byID.PlacementGroups[0].GroupName)).To(Equal("kafka"))
		clusters, err := client.DescribePlacementGroups(ctx, &ec2.DescribePlacementGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("strategy"), Values: []string{"cluster"}}}})
		Expect(err).NotTo(HaveOccurred())
		Expect(clusters.PlacementGroups).To(HaveLen(1))
		Expect(aws.ToString(clusters.PlacementGroups[0].GroupName)).To(Equal("training"))
		_, err = client.DescribePlacementGroups(ctx, &ec2.DescribePlacementGroupsInput{GroupNames: []string{"missing"}})
		Expect(err).To(MatchError(ContainSubstring("InvalidPlacementGroup.Unknown")))

		types, err := client.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{"m5.large", "t3.large"}})
		Expect(err).NotTo(HaveOccurred())
		strategies := map[string][]ec2types.PlacementGroupStrategy{}
		for _, t := range types.InstanceTypes {
			strategies[string(t.InstanceType)] = t.PlacementGroupInfo.SupportedStrategies
		}
		Expect(strategies["m5.large"]).To(ContainElement(ec2types.PlacementGroupStrategyCluster))
		Expect(strategies["t3.large"]).To(And(ContainElement(ec2types.PlacementGroupStrategySpread), Not(ContainElement(ec2types.PlacementGroupStrategyCluster))))

		lt, err := client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("in-kafka"),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-00002000"), Placement: &ec2types.LaunchTemplatePlacementRequest{GroupId: aws.String(id)}}})
		Expect(err).NotTo(HaveOccurred())
		out, err := fleet(aws.ToString(lt.LaunchTemplate.LaunchTemplateName), ec2types.DefaultTargetCapacityTypeOnDemand, "", "m5.large")
		Expect(err).NotTo(HaveOccurred())
		Expect(out.Instances).To(HaveLen(1))
		described, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: out.Instances[0].InstanceIds})
		Expect(err).NotTo(HaveOccurred())
		placement := described.Reservations[0].Instances[0].Placement
		Expect(aws.ToString(placement.GroupName)).To(Equal("kafka"))
		Expect(aws.ToString(placement.GroupId)).To(Equal(id))
		Expect(aws.ToInt32(placement.PartitionNumber)).To(BeEquivalentTo(1))

		_, err = client.DeletePlacementGroup(ctx, &ec2.DeletePlacementGroupInput{GroupName: aws.String("kafka")})
		Expect(err).To(MatchError(ContainSubstring("InvalidPlacementGroup.InUse")))
		_, err = client.DeletePlacementGroup(ctx, &ec2.DeletePlacementGroupInput{GroupName: aws.String("training")})
		Expect(err).NotTo(HaveOccurred())
		_, err = client.DescribePlacementGroups(ctx, &ec2.DescribePlacementGroupsInput{GroupNames: []string{"training"}})
		Expect(err).To(MatchError(ContainSubstring("InvalidPlacementGroup.Unknown")))
	})

	It("refuses a cluster placement group an instance type EC2 keeps out of them", func() {
		id, err := sim.AddPlacementGroup(ec2sim.PlacementGroupConfig{Name: "training", Strategy: "cluster"})
		Expect(err).NotTo(HaveOccurred())
		lt, err := client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("in-training"),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-00002000"), Placement: &ec2types.LaunchTemplatePlacementRequest{GroupId: aws.String(id)}}})
		Expect(err).NotTo(HaveOccurred())
		out, err := fleet(aws.ToString(lt.LaunchTemplate.LaunchTemplateName), ec2types.DefaultTargetCapacityTypeOnDemand, "", "t3.large")
		Expect(err).NotTo(HaveOccurred())
		Expect(out.Instances).To(BeEmpty())
		Expect(out.Errors).NotTo(BeEmpty())
		Expect(aws.ToString(out.Errors[0].ErrorCode)).To(Equal("InvalidParameterCombination"))
	})

	It("serves the real catalog through the SDK's paginators", func() {
		pager := ec2.NewDescribeInstanceTypesPaginator(client, &ec2.DescribeInstanceTypesInput{})
		count, encrypted := 0, 0
		var m5 *ec2types.InstanceTypeInfo
		for pager.HasMorePages() {
			page, err := pager.NextPage(ctx)
			Expect(err).NotTo(HaveOccurred())
			for i := range page.InstanceTypes {
				count++
				if aws.ToBool(page.InstanceTypes[i].NetworkInfo.EncryptionInTransitSupported) {
					encrypted++
				}
				if page.InstanceTypes[i].InstanceType == "m5.large" {
					m5 = &page.InstanceTypes[i]
				}
			}
		}
		Expect(count).To(Equal(1363))
		Expect(encrypted).To(Equal(1091), "the types whose network encrypts in transit")
		Expect(m5).NotTo(BeNil())
		Expect(aws.ToInt32(m5.VCpuInfo.DefaultVCpus)).To(Equal(int32(2)))
		Expect(aws.ToInt64(m5.MemoryInfo.SizeInMiB)).To(Equal(int64(8192)))
		Expect(m5.ProcessorInfo.SupportedArchitectures).To(ConsistOf(ec2types.ArchitectureTypeX8664))
		Expect(aws.ToInt32(m5.NetworkInfo.MaximumNetworkInterfaces)).To(Equal(int32(3)))
		Expect(aws.ToFloat64(m5.ProcessorInfo.SustainedClockSpeedInGhz)).To(Equal(3.1))
		Expect(m5.NetworkInfo.EncryptionInTransitSupported).To(HaveValue(BeFalse()), "stated, and false for m5")

		prices, err := client.DescribeSpotPriceHistory(ctx, &ec2.DescribeSpotPriceHistoryInput{InstanceTypes: []ec2types.InstanceType{"m5.large"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(prices.SpotPriceHistory).To(HaveLen(3), "one price per zone")
		offerings, err := client.DescribeInstanceTypeOfferings(ctx, &ec2.DescribeInstanceTypeOfferingsInput{
			LocationType: ec2types.LocationTypeAvailabilityZone,
			Filters:      []ec2types.Filter{{Name: aws.String("instance-type"), Values: []string{"m5.large"}}},
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(offerings.InstanceTypeOfferings).To(HaveLen(3))
	})

	It("selects subnets, security groups and images by tags, names and wildcards", func() {
		subnets, err := client.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("tag:karpenter.sh/discovery"), Values: []string{"*"}}}})
		Expect(err).NotTo(HaveOccurred())
		Expect(subnets.Subnets).To(HaveLen(3))
		Expect(aws.ToString(subnets.Subnets[0].AvailabilityZone)).To(Equal("us-east-1a"))
		groups, err := client.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("tag:karpenter.sh/discovery"), Values: []string{"local"}}}})
		Expect(err).NotTo(HaveOccurred())
		Expect(groups.SecurityGroups).To(HaveLen(1))
		images, err := client.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}, Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{"amazon-eks-node-al2023-arm64-standard-*"}}}})
		Expect(err).NotTo(HaveOccurred())
		Expect(images.Images).To(HaveLen(1))
		Expect(images.Images[0].Architecture).To(Equal(ec2types.ArchitectureValuesArm64))
	})

	It("launches a Spot instance with CreateFleet, tags it, and finds it by tag", func() {
		out, err := fleet(launchTemplate(), ec2types.DefaultTargetCapacityTypeSpot, "", "m5.large", "c5.large")
		Expect(err).NotTo(HaveOccurred())
		Expect(out.Errors).To(BeEmpty())
		Expect(out.Instances).To(HaveLen(1))
		Expect(out.Instances[0].Lifecycle).To(Equal(ec2types.InstanceLifecycleSpot))
		id := out.Instances[0].InstanceIds[0]

		described, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
			{Name: aws.String("tag:karpenter.sh/nodeclaim"), Values: []string{"batch-abc"}},
			{Name: aws.String("instance-state-name"), Values: []string{"running", "pending"}},
		}})
		Expect(err).NotTo(HaveOccurred())
		Expect(described.Reservations).To(HaveLen(1))
		inst := described.Reservations[0].Instances[0]
		Expect(aws.ToString(inst.InstanceId)).To(Equal(id))
		Expect(inst.InstanceLifecycle).To(Equal(ec2types.InstanceLifecycleTypeSpot))
		Expect(aws.ToString(inst.ImageId)).To(Equal("ami-00002000"), "from the launch template")
		Expect(aws.ToString(inst.Placement.AvailabilityZone)).To(HavePrefix("us-east-1"))
	})

	It("ANDs filters as EC2 does, also two of the same name, and rejects a filter it does not know", func() {
		_, err := fleet(launchTemplate(), ec2types.DefaultTargetCapacityTypeSpot, "", "m5.large")
		Expect(err).NotTo(HaveOccurred())
		find := func(filters ...ec2types.Filter) int {
			out, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: filters})
			Expect(err).NotTo(HaveOccurred())
			return len(out.Reservations)
		}
		tagKey := func(k string) ec2types.Filter {
			return ec2types.Filter{Name: aws.String("tag-key"), Values: []string{k}}
		}
		Expect(find(tagKey("karpenter.sh/nodeclaim"))).To(Equal(1))
		Expect(find(tagKey("karpenter.sh/nodeclaim"), tagKey("kubernetes.io/cluster/other"))).To(Equal(0),
			"the second tag-key filter must not replace the first")
		Expect(find(tagKey("kubernetes.io/cluster/other"), tagKey("karpenter.sh/nodeclaim"))).To(Equal(0))
		Expect(find(ec2types.Filter{Name: aws.String("availability-zone"), Values: []string{"us-east-1a", "us-east-1b", "us-east-1c"}},
			ec2types.Filter{Name: aws.String("availability-zone"), Values: []string{"nowhere-1z"}})).To(Equal(0))

		_, err = client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("instance-colour"), Values: []string{"red"}}}})
		Expect(apiCode(err)).To(Equal("InvalidParameterValue"), "an unknown filter fails rather than being ignored")
	})

	It("answers InsufficientInstanceCapacity per override and launches from another pool", func() {
		sim.SetFaults(ec2sim.Faults{Capacity: []ec2sim.CapacityRule{{InstanceType: "c5.large", CapacityType: "spot", Max: 0}}})
		// c5.large is cheaper than m5.large, so the fleet tries it first.
		out, err := fleet(launchTemplate(), ec2types.DefaultTargetCapacityTypeSpot, "", "m5.large", "c5.large")
		Expect(err).NotTo(HaveOccurred())
		Expect(out.Instances).To(HaveLen(1))
		Expect(out.Instances[0].InstanceType).To(Equal(ec2types.InstanceType("m5.large")))
		Expect(out.Errors).NotTo(BeEmpty())
		for _, e := range out.Errors {
			Expect(aws.ToString(e.ErrorCode)).To(Equal("InsufficientInstanceCapacity"))
			Expect(e.LaunchTemplateAndOverrides.Overrides.InstanceType).To(Equal(ec2types.InstanceType("c5.large")))
		}
	})

	DescribeTable("plays back quota and permission failures as fleet errors",
		func(faults ec2sim.Faults, capacityType ec2types.DefaultTargetCapacityType, code string) {
			sim.SetFaults(faults)
			out, err := fleet(launchTemplate(), capacityType, "", "m5.large")
			Expect(err).NotTo(HaveOccurred())
			Expect(out.Instances).To(BeEmpty())
			Expect(out.Errors).NotTo(BeEmpty())
			Expect(aws.ToString(out.Errors[0].ErrorCode)).To(Equal(code))
		},
		Entry("Spot vCPU quota", ec2sim.Faults{SpotVCPUQuota: aws.Int64(0)}, ec2types.DefaultTargetCapacityTypeSpot, "MaxSpotInstanceCountExceeded"),
		Entry("on-demand vCPU quota", ec2sim.Faults{OnDemandVCPUQuota: aws.Int64(1)}, ec2types.DefaultTargetCapacityTypeOnDemand, "VcpuLimitExceeded"),
		Entry("no Spot service-linked role", ec2sim.Faults{NoSpotServiceLinkedRole: true}, ec2types.DefaultTargetCapacityTypeSpot, "AuthFailure.ServiceLinkedRoleCreationNotPermitted"),
		Entry("unfulfillable", ec2sim.Faults{Unfulfillable: []ec2sim.CapacityRule{{InstanceType: "m5.large"}}}, ec2types.DefaultTargetCapacityTypeOnDemand, "UnfulfillableCapacity"),
	)

	It("returns the same instance for a retried CreateFleet with the same ClientToken", func() {
		lt := launchTemplate()
		first, err := fleet(lt, ec2types.DefaultTargetCapacityTypeOnDemand, "nodeclaim-uid-1", "m5.large")
		Expect(err).NotTo(HaveOccurred())
		second, err := fleet(lt, ec2types.DefaultTargetCapacityTypeOnDemand, "nodeclaim-uid-1", "m5.large")
		Expect(err).NotTo(HaveOccurred())
		Expect(aws.ToString(second.FleetId)).To(Equal(aws.ToString(first.FleetId)))
		Expect(second.Instances[0].InstanceIds).To(Equal(first.Instances[0].InstanceIds))
		Expect(sim.Instances()).To(HaveLen(1), "no second instance")
	})

	It("rejects a fleet whose launch template does not exist, with the EC2 error code and a request id", func() {
		_, err := fleet("missing", ec2types.DefaultTargetCapacityTypeSpot, "", "m5.large")
		Expect(apiCode(err)).To(Equal("InvalidLaunchTemplateName.NotFoundException"))
		Expect(err.Error()).To(ContainSubstring("RequestID"))
	})

	It("treats terminating an unknown instance as InvalidInstanceID.NotFound", func() {
		_, err := client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}})
		Expect(apiCode(err)).To(Equal("InvalidInstanceID.NotFound"))
	})

	It("throttles with RequestLimitExceeded, which the SDK retries, and records every attempt", func() {
		sim.SetFaults(ec2sim.Faults{ThrottleEvery: 2})
		sim.ResetRequests()
		_, err := client.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
		Expect(err).NotTo(HaveOccurred())
		_, err = client.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
		Expect(err).NotTo(HaveOccurred(), "the SDK retries a throttled call")
		var codes []string
		for _, r := range sim.Requests() {
			codes = append(codes, r.Action+":"+r.Error)
		}
		Expect(codes).To(Equal([]string{"DescribeAvailabilityZones:", "DescribeAvailabilityZones:RequestLimitExceeded", "DescribeAvailabilityZones:"}))
	})

	It("keeps a launch template's user data on the instances launched from it, and refuses user data that is not base64", func() {
		_, err := client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String("with-user-data"),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-00002000"), UserData: aws.String(base64.StdEncoding.EncodeToString([]byte("#!/bin/bash\necho hi\n")))},
		})
		Expect(err).NotTo(HaveOccurred())
		_, err = fleet("with-user-data", ec2types.DefaultTargetCapacityTypeOnDemand, "", "m5.large")
		Expect(err).NotTo(HaveOccurred())
		Expect(sim.Instances()[0].UserData).To(Equal("#!/bin/bash\necho hi\n"))

		_, err = client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String("bad-user-data"),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-00002000"), UserData: aws.String("#!/bin/bash not base64")},
		})
		Expect(apiCode(err)).To(Equal("InvalidUserData.Malformed"))
	})

	It("describes its EKS cluster through the SDK, and no other", func() {
		eksClient := test.EKSClient(endpoint)
		out, err := eksClient.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String("local")})
		Expect(err).NotTo(HaveOccurred())
		Expect(aws.ToString(out.Cluster.Endpoint)).To(HavePrefix("https://"))
		Expect(aws.ToString(out.Cluster.CertificateAuthority.Data)).NotTo(BeEmpty())
		Expect(aws.ToString(out.Cluster.KubernetesNetworkConfig.ServiceIpv4Cidr)).To(Equal("172.20.0.0/16"))
		Expect(string(out.Cluster.KubernetesNetworkConfig.IpFamily)).To(Equal("ipv4"))

		_, err = eksClient.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String("elsewhere")})
		var notFound *ekstypes.ResourceNotFoundException
		Expect(errors.As(err, &notFound)).To(BeTrue(), "%v", err)
		Expect(sim.Requests()).To(ContainElement(And(HaveField("Action", "eks:DescribeCluster"), HaveField("Error", "ResourceNotFoundException"))))

		resp, err := http.Get(endpoint + "/clusters/local")
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden), "an unsigned request is refused")
	})

	It("answers an action it does not know with InvalidAction", func() {
		resp, err := http.PostForm(endpoint, url.Values{"Action": {"DescribeVpcs"}, "Version": {"2016-11-15"}})
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
		body, err := io.ReadAll(resp.Body)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(body)).To(ContainSubstring("<Code>InvalidAction</Code>"))
	})

	It("interrupts a Spot instance through the admin endpoint", func() {
		out, err := fleet(launchTemplate(), ec2types.DefaultTargetCapacityTypeSpot, "", "m5.large")
		Expect(err).NotTo(HaveOccurred())
		id := out.Instances[0].InstanceIds[0]
		resp, err := http.Post(endpoint+"/admin/interrupt?instance="+id, "application/json", nil)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(sim.Instances()[0].Interrupted).To(BeTrue())
	})
})
