package aws_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
	"github.com/backstop-sh/backstop/test/nodeboot"
)

var _ = Describe("the fleet launcher", func() {
	var (
		ctx         = context.Background()
		sim         *ec2sim.Server
		client      *ec2.Client
		launcher    *aws.Launcher
		unavailable *aws.UnavailableOfferings
		offerings   *aws.Offerings
		class       *awsv1.EC2NodeClass
		facts       *aws.ClusterFacts
		simURL      string
	)

	BeforeEach(func() {
		sim, client, simURL = test.StartEC2Simulator(ec2sim.Config{ClusterTag: "my-cluster"}, clock.RealClock{})
		var err error
		// The claims below are this launcher's process's own, so it launches
		// them without asking EC2 first.
		path := test.NewLaunch(simURL, "my-cluster", "this-process")
		launcher, offerings, unavailable, facts = path.Launcher, path.Offerings, path.Unavailable, path.Facts
		class = &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: awsv1.EC2NodeClassSpec{
			Role: "KarpenterNodeRole-my-cluster", AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
			Tags:                       map[string]string{"team": "data"},
		}}
		class.Status, err = test.NewResolver(simURL, "my-cluster").Resolve(ctx, class)
		Expect(err).NotTo(HaveOccurred())
		sim.ResetRequests()
	})

	claim := func(name string, capacityTypes ...string) *v1.NodeClaim {
		return &v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{v1.NodePoolLabelKey: "batch"},
				Annotations: map[string]string{cloudprovider.CreatedByAnnotation: "this-process"}},
			Spec: v1.NodeClaimSpec{Requirements: []v1.NodeSelectorRequirementWithMinValues{
				{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"c5.large", "m5.large", "m6g.large"}},
				{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: capacityTypes},
			}},
		}
	}
	fleetCallsOf := func(s *ec2sim.Server) []ec2sim.Request {
		var out []ec2sim.Request
		for _, r := range s.Requests() {
			if r.Action == "CreateFleet" {
				out = append(out, r)
			}
		}
		return out
	}
	fleetCalls := func() []ec2sim.Request { return fleetCallsOf(sim) }

	It("launches Spot with price-capacity-optimized, the cheapest overrides first, tagged for the cluster", func() {
		inst, err := launcher.Launch(ctx, claim("a", "spot", "on-demand"), class)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.CapacityType).To(Equal("spot"))
		Expect(inst.ProviderID).To(MatchRegexp(`^aws:///us-east-1[abc]/i-[0-9a-f]+$`))
		Expect(inst.Allocatable).To(HaveKey(corev1.ResourceCPU))
		calls := fleetCalls()
		Expect(calls).To(HaveLen(1))
		p := calls[0].Params
		Expect(p).To(HaveKeyWithValue("Type", "instant"))
		Expect(p).To(HaveKeyWithValue("TargetCapacitySpecification.DefaultTargetCapacityType", "spot"))
		Expect(p).To(HaveKeyWithValue("SpotOptions.AllocationStrategy", "price-capacity-optimized"))
		Expect(p).NotTo(HaveKey("OnDemandOptions.AllocationStrategy"), "one capacity type per call")
		Expect(p).To(HaveKey("ClientToken"))
		templateOf := map[string]string{}
		for k, v := range p {
			if cfg, ok := strings.CutSuffix(k, ".InstanceType"); ok && strings.HasPrefix(k, "LaunchTemplateConfigs.") {
				n := strings.Split(cfg, ".")[1]
				templateOf[v] = p["LaunchTemplateConfigs."+n+".LaunchTemplateSpecification.LaunchTemplateName"]
			}
		}
		Expect(templateOf).To(HaveLen(3))
		Expect(templateOf["m6g.large"]).NotTo(Equal(templateOf["m5.large"]), "arm64 types use the arm64 image's template")
		Expect(templateOf["c5.large"]).To(Equal(templateOf["m5.large"]))

		launched := sim.Instances()[0]
		Expect(launched.Tags).To(HaveKeyWithValue("kubernetes.io/cluster/my-cluster", "owned"))
		Expect(launched.Tags).To(HaveKeyWithValue("karpenter.sh/nodeclaim", "a"))
		Expect(launched.Tags).To(HaveKeyWithValue("karpenter.sh/nodepool", "batch"))
		Expect(launched.Tags).To(HaveKeyWithValue("karpenter.k8s.aws/ec2nodeclass", "default"))
		Expect(launched.Tags).To(HaveKeyWithValue("eks:eks-cluster-name", "my-cluster"))
		Expect(launched.Tags).To(HaveKeyWithValue("team", "data"))
	})

	It("launches a NodeClaim that requires a zone id in the zone of that id, and labels its instance with it", func() {
		Expect(aws.LabelTopologyZoneID).To(Equal(scheduling.ZoneIDLabelKey), "the planner plans zone ids by the label the launcher writes")
		c := claim("a", "spot", "on-demand")
		// This account's us-east-1b is use1-az6 (the simulator maps names to ids out of order, as EC2 does per account).
		c.Spec.Requirements = append(c.Spec.Requirements, v1.NodeSelectorRequirementWithMinValues{Key: aws.LabelTopologyZoneID, Operator: v1.OpIn, Values: []string{"use1-az6"}})
		inst, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.Zone).To(Equal("us-east-1b"))
		Expect(inst.Labels).To(HaveKeyWithValue(aws.LabelTopologyZoneID, "use1-az6"))
		zones := 0
		for k, v := range fleetCalls()[0].Params {
			if strings.HasSuffix(k, ".AvailabilityZone") {
				Expect(v).To(Equal("us-east-1b"), k)
				zones++
			}
		}
		Expect(zones).To(BeNumerically(">", 0), "the fleet's overrides name their zones")
	})

	Context("with a capacity reservation", func() {
		var reservation string
		var path test.Launch
		BeforeEach(func() {
			var err error
			reservation, err = sim.Reserve(ec2sim.CapacityReservationConfig{InstanceType: "m5.large", Zone: "us-east-1b", Count: 2,
				MatchCriteria: "targeted", Tags: map[string]string{"team": "data"}})
			Expect(err).NotTo(HaveOccurred())
			// A launch path whose resolver and offerings share one count, as the controller's do.
			path = test.NewLaunch(simURL, "my-cluster", "this-process")
			launcher, offerings = path.Launcher, path.Offerings
			class.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{Tags: map[string]string{"team": "data"}}}
			resolver := test.NewResolver(simURL, "my-cluster")
			resolver.Reservations = path.Reservations
			class.Status, err = resolver.Resolve(ctx, class)
			Expect(err).NotTo(HaveOccurred())
			sim.ResetRequests()
		})
		claimFor := func(name string) *v1.NodeClaim {
			c := claim(name, "reserved", "spot", "on-demand")
			c.Spec.Requirements[0].Values = []string{"m5.large"}
			c.Labels = map[string]string{v1.NodePoolLabelKey: "batch"}
			return c
		}

		It("launches a reserved NodeClaim of a class with a spread placement group into both: a reservation not tied to a group serves any group", func() {
			id, err := sim.AddPlacementGroup(ec2sim.PlacementGroupConfig{Name: "etcd", Strategy: "spread"})
			Expect(err).NotTo(HaveOccurred())
			class.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: ptr.To("etcd")}
			resolver := test.NewResolver(simURL, "my-cluster")
			resolver.Reservations = path.Reservations
			class.Status, err = resolver.Resolve(ctx, class)
			Expect(err).NotTo(HaveOccurred())
			inst, err := launcher.Launch(ctx, claimFor("r1"), class)
			Expect(err).NotTo(HaveOccurred())
			Expect(inst.CapacityType).To(Equal(v1.CapacityTypeReserved))
			Expect(inst.Labels).To(HaveKeyWithValue(aws.LabelCapacityReservationID, reservation))
			Expect(inst.Labels).To(HaveKeyWithValue(aws.LabelPlacementGroupID, id))
			Expect(sim.Instances()).To(ConsistOf(MatchFields(IgnoreExtras, Fields{"CapacityReservationID": Equal(reservation), "PlacementGroup": Equal("etcd")})))
		})

		It("launches into it first, until it is full, then Spot; a terminated instance gives its room back", func() {
			Expect(aws.LabelCapacityReservationID).To(Equal(scheduling.ReservationIDLabelKey), "the planner pins claims by the label the launcher reads")
			Expect(class.Status.CapacityReservations).To(ConsistOf(awsv1.CapacityReservation{ID: reservation, AvailabilityZone: "us-east-1b",
				InstanceType: "m5.large", InstanceMatchCriteria: "targeted", OwnerID: "123456789012", ReservationType: "default", State: "active"}))
			types, err := offerings.InstanceTypes(ctx, class)
			Expect(err).NotTo(HaveOccurred())
			var reserved []scheduling.Offering
			for _, it := range types {
				for _, o := range it.Offerings {
					if o.CapacityType == v1.CapacityTypeReserved {
						Expect(it.Name).To(Equal("m5.large"))
						reserved = append(reserved, o)
					}
				}
			}
			Expect(reserved).To(HaveLen(1))
			Expect(reserved[0]).To(MatchFields(IgnoreExtras, Fields{"Zone": Equal("us-east-1b"), "Available": BeTrue(),
				"ReservationID": Equal(reservation), "ReservationCapacity": Equal(2), "Price": BeNumerically("<", 0.0001)}))

			var launched []*cloudprovider.Instance
			for _, name := range []string{"r1", "r2", "r3"} {
				inst, err := launcher.Launch(ctx, claimFor(name), class)
				Expect(err).NotTo(HaveOccurred())
				launched = append(launched, inst)
			}
			for _, inst := range launched[:2] {
				Expect(inst.CapacityType).To(Equal(v1.CapacityTypeReserved))
				Expect(inst.Zone).To(Equal("us-east-1b"))
				Expect(inst.Labels).To(HaveKeyWithValue(aws.LabelCapacityReservationID, reservation))
				Expect(inst.Labels).To(HaveKeyWithValue(aws.LabelCapacityReservationType, "default"))
			}
			Expect(launched[2].CapacityType).To(Equal(v1.CapacityTypeSpot), "the reservation is full: Spot next")
			Expect(launched[2].Labels).NotTo(HaveKey(aws.LabelCapacityReservationID))
			calls := fleetCalls()
			Expect(calls).To(HaveLen(3), "the third launch did not ask EC2 for the full reservation")
			p := calls[0].Params
			Expect(p).To(HaveKeyWithValue("TargetCapacitySpecification.DefaultTargetCapacityType", "on-demand"))
			Expect(p).To(HaveKeyWithValue("OnDemandOptions.AllocationStrategy", "lowest-price"))
			for _, r := range sim.Requests() {
				if r.Action == "CreateLaunchTemplate" && r.Params["LaunchTemplateData.CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId"] != "" {
					Expect(r.Params).To(HaveKeyWithValue("LaunchTemplateData.CapacityReservationSpecification.CapacityReservationPreference", "capacity-reservations-only"))
				}
			}
			inReservation := 0
			for _, inst := range sim.Instances() {
				if inst.CapacityReservationID == reservation {
					inReservation++
				}
			}
			Expect(inReservation).To(Equal(2))

			// Found again in EC2 (a restart), the instance is still reserved.
			got, err := launcher.Get(ctx, launched[0].ProviderID)
			Expect(err).NotTo(HaveOccurred())
			Expect(got.CapacityType).To(Equal(v1.CapacityTypeReserved))

			done := claimFor("r1")
			done.Labels[aws.LabelCapacityReservationID] = reservation
			done.Status.ProviderID = launched[0].ProviderID
			Expect(launcher.Delete(ctx, done)).To(Succeed())
			Expect(launcher.Delete(ctx, done)).To(Succeed(), "deleting twice gives the room back once")
			Expect(path.Reservations.Available(reservation)).To(Equal(1))
			inst, err := launcher.Launch(ctx, claimFor("r4"), class)
			Expect(err).NotTo(HaveOccurred())
			Expect(inst.CapacityType).To(Equal(v1.CapacityTypeReserved))

			// The owner cancels the reservation: its instances run on as
			// On-Demand, and are described so (GC relabels their nodes).
			sim.SetPolicy(ec2sim.AllowAll)
			_, err = client.CancelCapacityReservation(ctx, &ec2.CancelCapacityReservationInput{CapacityReservationId: ptr.To(reservation)})
			Expect(err).NotTo(HaveOccurred())
			got, err = launcher.Get(ctx, inst.ProviderID)
			Expect(err).NotTo(HaveOccurred())
			Expect(got.CapacityType).To(Equal(v1.CapacityTypeOnDemand))
		})

		It("takes EC2's word when the reservation is full behind its back, and moves on to Spot", func() {
			// Another controller process fills the reservation.
			other := test.NewLaunch(simURL, "my-cluster", "other-process")
			for _, name := range []string{"o1", "o2"} {
				c := claimFor(name)
				c.Annotations[cloudprovider.CreatedByAnnotation] = "other-process"
				c.UID = types.UID("other-" + name)
				// Its count comes from the same description.
				resolver := test.NewResolver(simURL, "my-cluster")
				resolver.Reservations = other.Reservations
				_, err := resolver.Resolve(ctx, class)
				Expect(err).NotTo(HaveOccurred())
				inst, err := other.Launcher.Launch(ctx, c, class)
				Expect(err).NotTo(HaveOccurred())
				Expect(inst.CapacityType).To(Equal(v1.CapacityTypeReserved))
			}
			_, err := launcher.Launch(ctx, claimFor("late"), class)
			var ice *cloudprovider.InsufficientCapacityError
			Expect(errors.As(err, &ice)).To(BeTrue(), "%v", err)
			Expect(ice.Code).To(Equal("ReservationCapacityExceeded"))
			Expect(path.Reservations.Available(reservation)).To(BeZero())
			inst, err := launcher.Launch(ctx, claimFor("late-2"), class)
			Expect(err).NotTo(HaveOccurred())
			Expect(inst.CapacityType).To(Equal(v1.CapacityTypeSpot))
		})

		It("keeps its On-Demand launches out of open reservations, which EC2 otherwise fills first", func() {
			open, err := sim.Reserve(ec2sim.CapacityReservationConfig{InstanceType: "c5.large", Zone: "us-east-1a", Count: 2})
			Expect(err).NotTo(HaveOccurred())
			// Another tool's On-Demand instance runs in the open reservation, as on EC2.
			other := sim.Launch("c5.large", "us-east-1a", nil)
			got, err := launcher.Get(ctx, "aws:///us-east-1a/"+other)
			Expect(err).NotTo(HaveOccurred())
			Expect(got.CapacityType).To(Equal(v1.CapacityTypeReserved), "described as running in %s", open)

			c := claim("od", "on-demand")
			c.Spec.Requirements[0].Values = []string{"c5.large"}
			c.Spec.Requirements = append(c.Spec.Requirements, v1.NodeSelectorRequirementWithMinValues{Key: corev1.LabelTopologyZone, Operator: v1.OpIn, Values: []string{"us-east-1a"}})
			inst, err := launcher.Launch(ctx, c, class)
			Expect(err).NotTo(HaveOccurred())
			Expect(inst.CapacityType).To(Equal(v1.CapacityTypeOnDemand))
			for _, i := range sim.Instances() {
				if i.ID == inst.ID {
					Expect(i.CapacityReservationID).To(BeEmpty(), "launched with CapacityReservationPreference none")
				}
			}
		})

		It("lists a reservation EC2 refuses for its type or capacity type, as EC2 would refuse it", func() {
			sim.SetPolicy(ec2sim.AllowAll) // EC2's own checks, not IAM's
			_, err := client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: ptr.To("into-reservation"),
				LaunchTemplateData: &ec2types.RequestLaunchTemplateData{CapacityReservationSpecification: &ec2types.LaunchTemplateCapacityReservationSpecificationRequest{
					CapacityReservationPreference: ec2types.CapacityReservationPreferenceCapacityReservationsOnly,
					CapacityReservationTarget:     &ec2types.CapacityReservationTarget{CapacityReservationId: ptr.To(reservation)}}}})
			Expect(err).NotTo(HaveOccurred())
			fleet := func(instanceType, zone string, capacityType ec2types.DefaultTargetCapacityType) string {
				subnet := ""
				for _, s := range class.Status.Subnets {
					if s.Zone == zone {
						subnet = s.ID
					}
				}
				out, err := client.CreateFleet(ctx, &ec2.CreateFleetInput{Type: ec2types.FleetTypeInstant,
					TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{TotalTargetCapacity: ptr.To[int32](1), DefaultTargetCapacityType: capacityType},
					LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
						LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: ptr.To("into-reservation"), Version: ptr.To("$Latest")},
						Overrides:                   []ec2types.FleetLaunchTemplateOverridesRequest{{InstanceType: ec2types.InstanceType(instanceType), SubnetId: ptr.To(subnet)}}}}})
				Expect(err).NotTo(HaveOccurred())
				if len(out.Instances) > 0 {
					return ""
				}
				Expect(out.Errors).To(HaveLen(1))
				return *out.Errors[0].ErrorCode
			}
			Expect(fleet("c5.large", "us-east-1b", "on-demand")).To(Equal("InvalidParameterCombination"), "another type")
			Expect(fleet("m5.large", "us-east-1a", "on-demand")).To(Equal("InvalidParameterCombination"), "another zone")
			Expect(fleet("m5.large", "us-east-1b", "spot")).To(Equal("InvalidParameterCombination"), "Spot")
			Expect(fleet("m5.large", "us-east-1b", "on-demand")).To(Equal(""))
			Expect(fleet("m5.large", "us-east-1b", "on-demand")).To(Equal(""))
			Expect(fleet("m5.large", "us-east-1b", "on-demand")).To(Equal("ReservationCapacityExceeded"))
		})

		It("needs the policy's right to launch into capacity reservations", func() {
			shipped, err := os.ReadFile(test.ShippedPolicy)
			Expect(err).NotTo(HaveOccurred())
			doc := strings.ReplaceAll(string(shipped), `"arn:${AWS::Partition}:ec2:${AWS::Region}:*:capacity-reservation/*"`, `"arn:${AWS::Partition}:ec2:${AWS::Region}:*:nothing/*"`)
			Expect(doc).NotTo(Equal(string(shipped)))
			narrower, err := ec2sim.ParsePolicy([]byte(doc), (&ec2sim.Config{ClusterTag: "my-cluster"}).PolicyVars())
			Expect(err).NotTo(HaveOccurred())
			sim.SetPolicy(narrower)
			_, err = launcher.Launch(ctx, claimFor("denied"), class)
			Expect(err).To(MatchError(ContainSubstring("capacity-reservation/" + reservation)))
		})
	})

	Context("with a placement group", func() {
		// placed resolves the class again with a selector for the group.
		placed := func(group ec2sim.PlacementGroupConfig) string {
			id, err := sim.AddPlacementGroup(group)
			Expect(err).NotTo(HaveOccurred())
			class.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: ptr.To(group.Name)}
			class.Status, err = test.NewResolver(simURL, "my-cluster").Resolve(ctx, class)
			Expect(err).NotTo(HaveOccurred())
			Expect(class.Status.PlacementGroup).NotTo(BeNil())
			Expect(class.Status.PlacementGroup.ID).To(Equal(id))
			Expect(meta.IsStatusConditionTrue(class.Status.Conditions, awsv1.ConditionPlacementGroupReady)).To(BeTrue())
			Expect(meta.IsStatusConditionTrue(class.Status.Conditions, awsv1.ConditionReady)).To(BeTrue())
			return id
		}
		inZone := func(name, zone string, capacityTypes ...string) *v1.NodeClaim {
			c := claim(name, capacityTypes...)
			c.Spec.Requirements = append(c.Spec.Requirements, v1.NodeSelectorRequirementWithMinValues{Key: corev1.LabelTopologyZone, Operator: v1.OpIn, Values: []string{zone}})
			return c
		}

		It("launches every instance into the group, labelled with its id and, in a partition group, the partition EC2 chose", func() {
			id := placed(ec2sim.PlacementGroupConfig{Name: "kafka", Strategy: "partition", PartitionCount: 3})
			Expect(class.Status.PlacementGroup.Strategy).To(Equal("partition"))
			Expect(class.Status.PlacementGroup.PartitionCount).To(BeEquivalentTo(3))
			partitions := map[string]bool{}
			for _, name := range []string{"p1", "p2", "p3"} {
				inst, err := launcher.Launch(ctx, claim(name, "on-demand"), class)
				Expect(err).NotTo(HaveOccurred())
				Expect(inst.Labels).To(HaveKeyWithValue(aws.LabelPlacementGroupID, id))
				partitions[inst.Labels[aws.LabelPlacementGroupPartition]] = true
			}
			Expect(partitions).To(Equal(map[string]bool{"1": true, "2": true, "3": true}), "EC2 spreads them over the partitions; each node says which")
			for _, i := range sim.Instances() {
				Expect(i.PlacementGroup).To(Equal("kafka"))
			}
			templates := 0
			for _, r := range sim.Requests() {
				if r.Action == "CreateLaunchTemplate" {
					Expect(r.Params).To(HaveKeyWithValue("LaunchTemplateData.Placement.GroupId", id))
					templates++
				}
			}
			Expect(templates).To(BeNumerically(">", 0))
		})

		It("launches a NodeClaim that asks for one partition into that partition, through a template of its own", func() {
			placed(ec2sim.PlacementGroupConfig{Name: "kafka", Strategy: "partition", PartitionCount: 3})
			types, err := offerings.InstanceTypes(ctx, class)
			Expect(err).NotTo(HaveOccurred())
			Expect(types).NotTo(BeEmpty())
			Expect(types[0].Requirements[aws.LabelPlacementGroupPartition].Values()).To(ConsistOf("1", "2", "3"), "a type may land in any partition")
			for _, want := range []string{"3", "3", "2"} {
				c := claim("in-"+want+"-"+strconv.Itoa(len(sim.Instances())), "on-demand")
				c.Spec.Requirements = append(c.Spec.Requirements, v1.NodeSelectorRequirementWithMinValues{Key: aws.LabelPlacementGroupPartition, Operator: v1.OpIn, Values: []string{want}})
				inst, err := launcher.Launch(ctx, c, class)
				Expect(err).NotTo(HaveOccurred())
				Expect(inst.Labels).To(HaveKeyWithValue(aws.LabelPlacementGroupPartition, want))
			}
			partitions := map[int]int{}
			for _, i := range sim.Instances() {
				partitions[i.PartitionNumber]++
			}
			Expect(partitions).To(Equal(map[int]int{3: 2, 2: 1}), "EC2 alone would have filled partitions 1, 2 and 3")
			asked := map[string]bool{}
			for _, r := range sim.Requests() {
				if r.Action == "CreateLaunchTemplate" {
					asked[r.Params["LaunchTemplateData.Placement.PartitionNumber"]] = true
				}
			}
			Expect(asked).To(Equal(map[string]bool{"2": true, "3": true}))
		})

		It("offers a cluster group only the types EC2 lets into one, each carrying the group's id", func() {
			id := placed(ec2sim.PlacementGroupConfig{Name: "training", Strategy: "cluster"})
			types, err := offerings.InstanceTypes(ctx, class)
			Expect(err).NotTo(HaveOccurred())
			names := map[string]bool{}
			for _, it := range types {
				names[it.Name] = true
				Expect(it.Requirements.Labels()).To(HaveKeyWithValue(aws.LabelPlacementGroupID, id), it.Name)
			}
			Expect(names).To(And(HaveKey("m5.large"), HaveKey("c5.large")))
			Expect(names).NotTo(Or(HaveKey("t3.large"), HaveKey("m7i-flex.large"), HaveKey("mac2.metal")), "burstable, flex and Mac types stay out of cluster groups")
		})

		It("keeps a cluster group's launches in its zone; the capacity refused elsewhere is the group's alone", func() {
			id := placed(ec2sim.PlacementGroupConfig{Name: "training", Strategy: "cluster"})
			first, err := launcher.Launch(ctx, inZone("first", "us-east-1a", "on-demand"), class)
			Expect(err).NotTo(HaveOccurred())
			Expect(first.Zone).To(Equal("us-east-1a"))
			_, err = launcher.Launch(ctx, inZone("elsewhere", "us-east-1b", "on-demand"), class)
			Expect(cloudprovider.IsInsufficientCapacity(err)).To(BeTrue(), "EC2 has no room for the group outside its zone: %v", err)
			Expect(unavailable.IsUnavailableIn("m5.large", "us-east-1b", "on-demand", id)).To(BeTrue())
			Expect(unavailable.IsUnavailable("m5.large", "us-east-1b", "on-demand")).To(BeFalse(), "outside the group the type is still there")
			plain := class.DeepCopy()
			plain.Spec.PlacementGroupSelector, plain.Status.PlacementGroup = nil, nil
			inst, err := launcher.Launch(ctx, inZone("outside", "us-east-1b", "on-demand"), plain)
			Expect(err).NotTo(HaveOccurred())
			Expect(inst.Labels).NotTo(HaveKey(aws.LabelPlacementGroupID))
		})

		It("learns a cluster group's zone from its instances and offers only that zone, so no launch is refused", func() {
			placed(ec2sim.PlacementGroupConfig{Name: "training", Strategy: "cluster"})
			Expect(class.Status.PlacementGroup.Zone).To(BeEmpty(), "an empty group may start in any zone")
			plain := class.DeepCopy()
			plain.Spec.PlacementGroupSelector, plain.Status.PlacementGroup = nil, nil
			_, err := launcher.Launch(ctx, inZone("outside", "us-east-1a", "on-demand"), plain)
			Expect(err).NotTo(HaveOccurred())
			_, err = launcher.Launch(ctx, inZone("first", "us-east-1c", "on-demand"), class)
			Expect(err).NotTo(HaveOccurred())
			class.Status, err = test.NewResolver(simURL, "my-cluster").Resolve(ctx, class)
			Expect(err).NotTo(HaveOccurred())
			Expect(class.Status.PlacementGroup.Zone).To(Equal("us-east-1c"))
			types, err := offerings.InstanceTypes(ctx, class)
			Expect(err).NotTo(HaveOccurred())
			for _, it := range types {
				for _, o := range it.Offerings {
					Expect(o.Zone).To(Equal("us-east-1c"), it.Name)
				}
			}
			sim.ResetRequests()
			inst, err := launcher.Launch(ctx, claim("second", "on-demand"), class)
			Expect(err).NotTo(HaveOccurred())
			Expect(inst.Zone).To(Equal("us-east-1c"))
			zones := 0
			for k, v := range fleetCalls()[0].Params {
				if strings.HasSuffix(k, ".AvailabilityZone") {
					Expect(v).To(Equal("us-east-1c"), "only the group's zone is asked for: %s", k)
					zones++
				}
			}
			Expect(zones).To(BeNumerically(">", 0), "the fleet's overrides name their zones")
		})

		It("closes a zone for a spread group once it holds seven instances there, and only for that group", func() {
			id := placed(ec2sim.PlacementGroupConfig{Name: "etcd", Strategy: "spread"})
			for i := range 7 {
				_, err := launcher.Launch(ctx, inZone(fmt.Sprintf("member-%d", i), "us-east-1a", "on-demand"), class)
				Expect(err).NotTo(HaveOccurred())
			}
			_, err := launcher.Launch(ctx, inZone("eighth", "us-east-1a", "on-demand"), class)
			Expect(cloudprovider.IsInsufficientCapacity(err)).To(BeTrue(), "%v", err)
			for _, t := range []string{"m5.large", "c5.large", "r5.large"} {
				Expect(unavailable.IsUnavailableIn(t, "us-east-1a", "spot", id)).To(BeTrue(), "every type of the zone, for the group: %s", t)
				Expect(unavailable.IsUnavailable(t, "us-east-1a", "spot")).To(BeFalse(), "not outside the group: %s", t)
			}
			Expect(unavailable.IsUnavailableIn("m5.large", "us-east-1b", "on-demand", id)).To(BeFalse(), "other zones stay open")
			_, err = launcher.Launch(ctx, inZone("next-zone", "us-east-1b", "on-demand"), class)
			Expect(err).NotTo(HaveOccurred())
		})

		It("launches nothing for a group EC2 does not know, and says so on the class", func() {
			class.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: ptr.To("missing")}
			var err error
			class.Status, err = test.NewResolver(simURL, "my-cluster").Resolve(ctx, class)
			Expect(err).NotTo(HaveOccurred())
			Expect(class.Status.PlacementGroup).To(BeNil())
			c := meta.FindStatusCondition(class.Status.Conditions, awsv1.ConditionPlacementGroupReady)
			Expect(c).NotTo(BeNil())
			Expect(c.Status).To(Equal(metav1.ConditionFalse))
			Expect(c.Message).To(And(ContainSubstring("spec.placementGroupSelector"), ContainSubstring("name missing")))
			Expect(meta.IsStatusConditionTrue(class.Status.Conditions, awsv1.ConditionReady)).To(BeFalse())
			_, err = launcher.Launch(ctx, claim("nowhere", "on-demand"), class)
			Expect(err).To(MatchError(ContainSubstring("placement group")))
			Expect(sim.Instances()).To(BeEmpty())
		})

		It("needs the policy's right to launch into placement groups", func() {
			placed(ec2sim.PlacementGroupConfig{Name: "training", Strategy: "cluster"})
			shipped, err := os.ReadFile(test.ShippedPolicy)
			Expect(err).NotTo(HaveOccurred())
			doc := strings.ReplaceAll(string(shipped), `"arn:${AWS::Partition}:ec2:${AWS::Region}:*:placement-group/*"`, `"arn:${AWS::Partition}:ec2:${AWS::Region}:*:nothing/*"`)
			Expect(doc).NotTo(Equal(string(shipped)))
			narrower, err := ec2sim.ParsePolicy([]byte(doc), (&ec2sim.Config{ClusterTag: "my-cluster"}).PolicyVars())
			Expect(err).NotTo(HaveOccurred())
			sim.SetPolicy(narrower)
			_, err = launcher.Launch(ctx, claim("denied", "on-demand"), class)
			Expect(err).To(MatchError(ContainSubstring("placement-group/training")))
		})
	})

	It("gives GPU and Neuron types EKS's accelerated images and the rest the standard one, and leaves out types no image boots", func() {
		c := claim("accel", "on-demand")
		c.Spec.Requirements[0].Values = []string{"m5.large", "g5.xlarge", "inf2.xlarge", "g4ad.xlarge"}
		// minValues keeps the accelerated types in a fleet that has a plain one (see below).
		c.Spec.Requirements[0].MinValues = ptr.To(3)
		_, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		imageOfTemplate := map[string]string{}
		for _, r := range sim.Requests() {
			if r.Action == "CreateLaunchTemplate" {
				imageOfTemplate[r.Params["LaunchTemplateName"]] = r.Params["LaunchTemplateData.ImageId"]
			}
		}
		p := fleetCalls()[0].Params
		imageOf := map[string]string{}
		for k, v := range p {
			if cfg, ok := strings.CutSuffix(k, ".InstanceType"); ok && strings.HasPrefix(k, "LaunchTemplateConfigs.") {
				n := strings.Split(cfg, ".")[1]
				img, _ := sim.Image(imageOfTemplate[p["LaunchTemplateConfigs."+n+".LaunchTemplateSpecification.LaunchTemplateName"]])
				imageOf[v] = img.Name
			}
		}
		Expect(imageOf).To(Equal(map[string]string{
			"m5.large":    "amazon-eks-node-al2023-x86_64-standard-1.36-v20261101",
			"g5.xlarge":   "amazon-eks-node-al2023-x86_64-nvidia-1.36-v20261101",
			"inf2.xlarge": "amazon-eks-node-al2023-x86_64-neuron-1.36-v20261101",
		}), "g4ad's AMD GPUs have no EKS image, so it is not offered")
	})

	It("offers no accelerated or bare-metal type while a plain one can launch, and no Spot dearer than the cheapest On-Demand", func() {
		overrides := func() map[string]bool {
			calls := fleetCalls()
			Expect(calls).NotTo(BeEmpty())
			out := map[string]bool{}
			for k, v := range calls[len(calls)-1].Params {
				if strings.HasPrefix(k, "LaunchTemplateConfigs.") && strings.HasSuffix(k, ".InstanceType") {
					out[v] = true
				}
			}
			return out
		}
		c := claim("plain", "on-demand")
		c.Spec.Requirements[0].Values = []string{"m5.large", "g5.xlarge", "inf2.xlarge", "m5.metal"}
		_, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(overrides()).To(Equal(map[string]bool{"m5.large": true}))

		c = claim("accelerated", "on-demand")
		c.Spec.Requirements[0].Values = []string{"g5.xlarge", "inf2.xlarge", "m5.metal"}
		_, err = launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(overrides()).To(Equal(map[string]bool{"g5.xlarge": true, "inf2.xlarge": true, "m5.metal": true}), "with nothing plain, all are offered")

		// c5.large costs $0.085/h On-Demand; m5.4xlarge's Spot price, at least a
		// quarter of its $0.768, is more in every zone.
		c = claim("spot", "spot", "on-demand")
		c.Spec.Requirements[0].Values = []string{"c5.large", "m5.4xlarge"}
		inst, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.CapacityType).To(Equal("spot"))
		Expect(overrides()).To(Equal(map[string]bool{"c5.large": true}))

		c = claim("spot-only", "spot")
		c.Spec.Requirements[0].Values = []string{"c5.large", "m5.4xlarge"}
		_, err = launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(overrides()).To(Equal(map[string]bool{"c5.large": true, "m5.4xlarge": true}), "without On-Demand there is no ceiling")
	})

	It("launches with the class's IPv4 prefixes, connection tracking, nested virtualization and volume initialization rate, on types that take them", func() {
		class.Spec.IPPrefixCount = ptr.To[int32](2)
		class.Spec.ConnectionTracking = &awsv1.ConnectionTracking{TCPEstablishedTimeout: ptr.To[int32](3600), UDPStreamTimeout: ptr.To[int32](120), UDPTimeout: ptr.To[int32](30)}
		class.Spec.CPUOptions = &awsv1.CPUOptions{NestedVirtualization: ptr.To("enabled")}
		class.Spec.BlockDeviceMappings = []awsv1.BlockDeviceMapping{
			{DeviceName: ptr.To("/dev/xvda"), RootVolume: true, EBS: &awsv1.BlockDevice{VolumeSize: ptr.To("20Gi"), VolumeType: ptr.To("gp3")}},
			{DeviceName: ptr.To("/dev/xvdb"), EBS: &awsv1.BlockDevice{SnapshotID: ptr.To("snap-0123456789abcdef0"), VolumeInitializationRate: ptr.To[int32](150)}},
		}
		c := claim("nested", "on-demand")
		// c5.large is cheaper, but its processor does not nest virtualization.
		c.Spec.Requirements[0].Values = []string{"c5.large", "m8i.large", "t3.micro"}
		inst, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.InstanceType).To(Equal("m8i.large"))
		types := map[string]bool{}
		for k, v := range fleetCalls()[0].Params {
			if strings.HasSuffix(k, ".InstanceType") {
				types[v] = true
			}
		}
		Expect(types).To(Equal(map[string]bool{"m8i.large": true}), "types EC2 would refuse are not asked for (one override per zone)")
		launched := sim.Instances()[0]
		Expect(launched.Options).To(Equal(ec2sim.LaunchOptions{NestedVirtualization: "enabled", IPv4Prefixes: 2,
			ConnectionTracking:        map[string]int{"TcpEstablishedTimeout": 3600, "UdpStreamTimeout": 120, "UdpTimeout": 30},
			VolumeInitializationRates: map[string]int{"/dev/xvdb": 150}}))
		Expect(launched.SecurityGroupIDs).NotTo(BeEmpty(), "the groups moved onto the primary interface")

		// Without nested virtualization, the claim's cheapest type again (all
		// three have ten address slots; a t3.micro's interface has two).
		class.Spec.CPUOptions = nil
		inst, err = launcher.Launch(ctx, claim("prefixes", "on-demand"), class)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.InstanceType).To(Equal("m6g.large"))
		c = claim("tiny", "on-demand")
		c.Spec.Requirements[0].Values = []string{"t3.micro"}
		_, err = launcher.Launch(ctx, c, class)
		Expect(err).To(HaveOccurred(), "no type of the NodeClaim can take two prefixes")
	})

	It("is refused by EC2 when a template asks what a type cannot do, as the simulator must be", func() {
		sim.SetPolicy(ec2sim.AllowAll) // EC2's own checks, not IAM's
		_, err := client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: ptr.To("bad-rate"),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{BlockDeviceMappings: []ec2types.LaunchTemplateBlockDeviceMappingRequest{
				{DeviceName: ptr.To("/dev/xvdb"), Ebs: &ec2types.LaunchTemplateEbsBlockDeviceRequest{VolumeSize: ptr.To[int32](20), VolumeInitializationRate: ptr.To[int32](200)}}}}})
		Expect(err).To(MatchError(ContainSubstring("InvalidParameterCombination")), "a rate without a snapshot")
		_, err = client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: ptr.To("bad-conntrack"),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{NetworkInterfaces: []ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{
				{DeviceIndex: ptr.To[int32](0), ConnectionTrackingSpecification: &ec2types.ConnectionTrackingSpecificationRequest{UdpTimeout: ptr.To[int32](10)}}}}})
		Expect(err).To(MatchError(ContainSubstring("connectionTrackingSpecification.UdpTimeout")))
		_, err = client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: ptr.To("nested"),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{CpuOptions: &ec2types.LaunchTemplateCpuOptionsRequest{NestedVirtualization: "enabled"}}})
		Expect(err).NotTo(HaveOccurred())
		out, err := client.CreateFleet(ctx, &ec2.CreateFleetInput{Type: ec2types.FleetTypeInstant,
			TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{TotalTargetCapacity: ptr.To[int32](1), DefaultTargetCapacityType: "on-demand"},
			LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
				LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: ptr.To("nested"), Version: ptr.To("$Latest")},
				Overrides:                   []ec2types.FleetLaunchTemplateOverridesRequest{{InstanceType: "c5.large", SubnetId: ptr.To(class.Status.Subnets[0].ID)}}}}})
		Expect(err).NotTo(HaveOccurred())
		Expect(out.Instances).To(BeEmpty())
		Expect(out.Errors).To(HaveLen(1))
		Expect(*out.Errors[0].ErrorCode).To(Equal("Unsupported"))
	})

	It("launches AL2023 nodes with user data that joins the cluster EKS describes, with the NodeClaim's labels and taints", func() {
		c := claim("boot", "on-demand")
		c.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}}
		c.Labels["kubernetes.io/forbidden"] = "x"
		class.Spec.Kubelet = &awsv1.KubeletConfiguration{MaxPods: ptr.To[int32](42)}
		_, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		boot, err := nodeboot.Read(sim.Instances()[0].UserData)
		Expect(err).NotTo(HaveOccurred(), "the instance's user data boots")
		Expect(boot.Spec.Cluster.Name).To(Equal("my-cluster"))
		Expect(boot.Spec.Cluster.APIServerEndpoint).To(HaveSuffix(".gr7.us-east-1.eks.amazonaws.com"), "EKS's endpoint")
		Expect(string(boot.Spec.Cluster.CertificateAuthority)).To(HavePrefix("-----BEGIN CERTIFICATE-----"))
		Expect(boot.Spec.Cluster.CIDR).To(Equal("172.20.0.0/16"))
		var maxPods int
		_, err = boot.KubeletValue("maxPods", &maxPods)
		Expect(err).NotTo(HaveOccurred())
		Expect(maxPods).To(Equal(42), "spec.kubelet reaches the node")
		taints, err := boot.Taints()
		Expect(err).NotTo(HaveOccurred())
		Expect(taints).To(ContainElements(HaveField("Key", v1.UnregisteredTaintKey), HaveField("Key", "dedicated")))
		labels, err := boot.Labels()
		Expect(err).NotTo(HaveOccurred())
		Expect(labels).To(HaveKeyWithValue(v1.NodePoolLabelKey, "batch"))
		Expect(labels).NotTo(HaveKey("kubernetes.io/forbidden"), "a label the kubelet may not set would keep the node from registering")
	})

	It("gives the family's default volumes when the EC2NodeClass names none: an encrypted 20 GiB gp3 root for AL2023", func() {
		_, err := launcher.Launch(ctx, claim("volumes", "on-demand"), class)
		Expect(err).NotTo(HaveOccurred())
		var created []ec2sim.Request
		for _, r := range sim.Requests() {
			if r.Action == "CreateLaunchTemplate" {
				created = append(created, r)
			}
		}
		Expect(created).NotTo(BeEmpty())
		Expect(created[0].Params).To(And(
			HaveKeyWithValue("LaunchTemplateData.BlockDeviceMapping.1.DeviceName", "/dev/xvda"),
			HaveKeyWithValue("LaunchTemplateData.BlockDeviceMapping.1.Ebs.VolumeSize", "20"),
			HaveKeyWithValue("LaunchTemplateData.BlockDeviceMapping.1.Ebs.VolumeType", "gp3"),
			HaveKeyWithValue("LaunchTemplateData.BlockDeviceMapping.1.Ebs.Encrypted", "true")))
		Expect(aws.DefaultBlockDevices("bottlerocket")).To(HaveLen(2), "Bottlerocket's OS and data volumes")
		Expect(aws.DefaultBlockDevices("custom")).To(BeEmpty(), "a custom image keeps its own")
	})

	It("takes the endpoint and CA given by flags over EKS's", func() {
		pem := "-----BEGIN CERTIFICATE-----\nMIIBflag\n-----END CERTIFICATE-----\n"
		overridden, err := aws.NewClusterFacts(test.EKSClient(simURL), "my-cluster", "https://10.0.0.1:6443", base64.StdEncoding.EncodeToString([]byte(pem)))
		Expect(err).NotTo(HaveOccurred())
		_, err = launcher.JoinsWith(overridden).Launch(ctx, claim("flags", "on-demand"), class)
		Expect(err).NotTo(HaveOccurred())
		boot, err := nodeboot.Read(sim.Instances()[0].UserData)
		Expect(err).NotTo(HaveOccurred())
		Expect(boot.Spec.Cluster.APIServerEndpoint).To(Equal("https://10.0.0.1:6443"))
		Expect(string(boot.Spec.Cluster.CertificateAuthority)).To(Equal(pem))

		_, err = aws.NewClusterFacts(test.EKSClient(simURL), "my-cluster", "", "not a certificate")
		Expect(err).To(MatchError(ContainSubstring("--cluster-ca-bundle")))
	})

	DescribeTable("launches nothing when EKS does not know the cluster or may not be asked, and says which cluster and what to check",
		func(policyFor, code string) {
			policyCfg := ec2sim.Config{ClusterTag: policyFor}
			policy, err := ec2sim.LoadPolicy(test.ShippedPolicy, policyCfg.PolicyVars())
			Expect(err).NotTo(HaveOccurred())
			sim.SetPolicy(policy)
			unknown, err := aws.NewClusterFacts(test.EKSClient(simURL), "other-cluster", "", "")
			Expect(err).NotTo(HaveOccurred())
			_, err = launcher.JoinsWith(unknown).Launch(ctx, claim("lost", "on-demand"), class)
			var cfg *cloudprovider.ConfigurationError
			Expect(errors.As(err, &cfg)).To(BeTrue(), "%v", err)
			Expect(cfg.Code).To(Equal(code))
			Expect(cfg.RequestID).NotTo(BeEmpty())
			Expect(cfg.Message).To(And(ContainSubstring("other-cluster"), ContainSubstring("--cluster-name"), ContainSubstring("eks:DescribeCluster")))
			Expect(fleetCalls()).To(BeEmpty())
			Expect(sim.Instances()).To(BeEmpty())
		},
		Entry("no such cluster (the role's policy is for it)", "other-cluster", "ResourceNotFoundException"),
		Entry("the role's policy is for another cluster", "my-cluster", "AccessDeniedException"),
	)

	It("sends at most 60 overrides, the cheapest, however many types the NodeClaim allows", func() {
		c := claim("many", "on-demand")
		c.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
			{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{"on-demand"}},
			{Key: corev1.LabelArchStable, Operator: v1.OpIn, Values: []string{"amd64"}},
		}
		_, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		p := fleetCalls()[0].Params
		overrides := 0
		var prices []float64
		types, err := offerings.InstanceTypes(ctx, class)
		Expect(err).NotTo(HaveOccurred())
		priceOf := map[string]float64{}
		for _, it := range types {
			for _, o := range it.Offerings {
				if o.CapacityType == "on-demand" {
					priceOf[it.Name] = o.Price
				}
			}
		}
		for k, v := range p {
			if strings.HasSuffix(k, ".InstanceType") && strings.Contains(k, ".Overrides.") {
				overrides++
				prices = append(prices, priceOf[v])
			}
		}
		Expect(overrides).To(Equal(aws.MaxOverrides))
		cheapest := []float64{}
		for _, it := range types {
			if it.Requirements[corev1.LabelArchStable].Has("amd64") {
				for range 3 { // one override per zone
					cheapest = append(cheapest, priceOf[it.Name])
				}
			}
		}
		sort.Float64s(cheapest)
		sort.Float64s(prices)
		Expect(prices).To(Equal(cheapest[:aws.MaxOverrides]), "the cheapest overrides are the ones sent")
	})

	It("launches On-Demand with lowest-price when the claim allows only On-Demand", func() {
		inst, err := launcher.Launch(ctx, claim("b", "on-demand"), class)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.CapacityType).To(Equal("on-demand"))
		Expect(fleetCalls()[0].Params).To(HaveKeyWithValue("OnDemandOptions.AllocationStrategy", "lowest-price"))
	})

	It("reuses its launch template and recreates it once if it disappears", func() {
		_, err := launcher.Launch(ctx, claim("c", "on-demand"), class)
		Expect(err).NotTo(HaveOccurred())
		out, err := client.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{})
		Expect(err).NotTo(HaveOccurred())
		Expect(out.LaunchTemplates).To(HaveLen(2), "one per architecture")
		for _, lt := range out.LaunchTemplates {
			_, err := client.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateName: lt.LaunchTemplateName})
			Expect(err).NotTo(HaveOccurred())
		}
		sim.ResetRequests()
		_, err = launcher.Launch(ctx, claim("d", "on-demand"), class)
		Expect(err).NotTo(HaveOccurred())
		var actions []string
		for _, r := range sim.Requests() {
			actions = append(actions, r.Action+":"+r.Error)
		}
		Expect(actions).To(ContainElement("CreateFleet:InvalidLaunchTemplateName.NotFoundException"))
		Expect(actions).To(ContainElement("CreateLaunchTemplate:"))
		Expect(actions[len(actions)-1]).To(Equal("CreateFleet:"))
	})

	It("asks for each launch template once however many NodeClaims launch at once", func() {
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				_, err := launcher.Launch(ctx, claim(fmt.Sprintf("burst-%d", i), "on-demand"), class)
				Expect(err).NotTo(HaveOccurred())
			}()
		}
		wg.Wait()
		by := map[string]int{}
		for _, r := range sim.Requests() {
			by[r.Action]++
		}
		Expect(by).To(HaveKeyWithValue("CreateFleet", 10))
		Expect(by).To(HaveKeyWithValue("DescribeLaunchTemplates", 2), "one per architecture: %v", by)
		Expect(by).To(HaveKeyWithValue("CreateLaunchTemplate", 2), "one per architecture: %v", by)
	})

	It("returns the same instance for a retried launch of the same NodeClaim", func() {
		c := claim("e", "spot")
		first, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		second, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(second.ID).To(Equal(first.ID))
		Expect(sim.Instances()).To(HaveLen(1))
	})

	It("waits out IAM's propagation of a new instance profile, and asks afresh rather than under the token EC2 refused", func() {
		slow, _, url := test.StartEC2Simulator(ec2sim.Config{ClusterTag: "my-cluster", IAMPropagation: ec2sim.Duration{Duration: 2 * time.Second}}, clock.RealClock{})
		fresh := test.NewLaunch(url, "my-cluster", "this-process").Launcher
		c := class.DeepCopy()
		var err error
		c.Status, err = test.NewResolver(url, "my-cluster").Resolve(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		nc := claim("propagating", "on-demand")
		_, err = fresh.Launch(ctx, nc, c)
		var retry *cloudprovider.RetryableError
		Expect(errors.As(err, &retry)).To(BeTrue(), "%v", err)
		Expect(retry.Code).To(Equal(aws.InstanceProfileNotPropagated))
		refusedAt := time.Now()
		Expect(retry.RetryAfter).To(Equal(3 * time.Second))
		Expect(retry.Err.Error()).To(ContainSubstring("IAM takes seconds"))
		fleets := func() int { return len(fleetCallsOf(slow)) }
		Expect(fleets()).To(Equal(1))
		other := claim("propagating-too", "on-demand")
		_, err = fresh.Launch(ctx, other, c)
		Expect(errors.As(err, &retry)).To(BeTrue(), "%v", err)
		Expect(retry.Code).To(Equal(aws.InstanceProfileNotPropagated))
		Expect(retry.RetryAfter).To(And(BeNumerically(">", 0), BeNumerically("<=", 3*time.Second)))
		Expect(fleets()).To(Equal(1), "the class's other NodeClaims wait too, without a CreateFleet each")
		time.Sleep(time.Until(refusedAt.Add(3 * time.Second)))
		inst, err := fresh.Launch(ctx, nc, c)
		Expect(err).NotTo(HaveOccurred(), "EC2 answers a token it has seen with its first answer; the retry needs its own")
		Expect(inst.ProviderID).NotTo(BeEmpty())
		_, err = fresh.Launch(ctx, other, c)
		Expect(err).NotTo(HaveOccurred())
	})

	It("keeps the EC2 error code and request id of a failed launch", func() {
		sim.SetFaults(ec2sim.Faults{Capacity: []ec2sim.CapacityRule{{CapacityType: "spot", Max: 0}}})
		_, err := launcher.Launch(ctx, claim("code", "spot"), class)
		var ice *cloudprovider.InsufficientCapacityError
		Expect(errors.As(err, &ice)).To(BeTrue(), "%v", err)
		Expect(ice.Code).To(Equal("InsufficientInstanceCapacity"))
		Expect(ice.RequestID).To(ContainSubstring("-sim-"), "the request id of the CreateFleet answer")
		Expect(err.Error()).To(ContainSubstring(ice.RequestID))

		sim.SetFaults(ec2sim.Faults{ThrottleNext: 10})
		_, err = launcher.Launch(ctx, claim("throttled", "on-demand"), class)
		var retry *cloudprovider.RetryableError
		Expect(errors.As(err, &retry)).To(BeTrue(), "%v", err)
		Expect(retry.Code).To(Equal("RequestLimitExceeded"))
		Expect(retry.RequestID).NotTo(BeEmpty())
	})

	It("turns a network failure into a retryable error, not a configuration error", func() {
		dead := test.EC2Client("http://127.0.0.1:1")
		offline := aws.NewLauncher(dead, "my-cluster", nil, unavailable, "other-process")
		_, err := offline.Launch(ctx, claim("offline", "on-demand"), class)
		var retry *cloudprovider.RetryableError
		Expect(errors.As(err, &retry)).To(BeTrue(), "%v", err)
		Expect(err.Error()).NotTo(ContainSubstring(": : "))
	})

	It("asks EC2 first when an earlier launch lost its answer, and adopts that instance even after Spot is marked unavailable", func() {
		c := claim("lost", "spot", "on-demand")
		sim.SetFaults(ec2sim.Faults{LoseFleetAnswers: 10})
		_, err := launcher.Launch(ctx, c, class)
		Expect(err).To(HaveOccurred(), "every answer was lost")
		Expect(cloudprovider.IsInsufficientCapacity(err)).To(BeFalse())
		Expect(sim.Instances()).To(HaveLen(1), "but EC2 launched the instance")
		sim.SetFaults(ec2sim.Faults{})
		// Meanwhile Spot ran out for everyone: without asking EC2 first, the
		// retry would launch On-Demand beside the Spot instance.
		unavailable.Mark(aws.Unavailable{Scope: aws.ScopeCapacityType, CapacityType: "spot", Code: "MaxSpotInstanceCountExceeded"})
		sim.ResetRequests()
		inst, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.ID).To(Equal(sim.Instances()[0].ID))
		Expect(inst.CapacityType).To(Equal("spot"))
		Expect(inst.Allocatable).To(HaveKey(corev1.ResourceCPU))
		Expect(fleetCalls()).To(BeEmpty())
		Expect(sim.Instances()).To(HaveLen(1))
	})

	It("asks EC2 first for a NodeClaim another process created, as after a restart or a leader change", func() {
		c := claim("old", "spot", "on-demand")
		_, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		restarted := aws.NewLauncher(client, "my-cluster", offerings, unavailable, "restarted-process").JoinsWith(facts)
		sim.ResetRequests()
		inst, err := restarted.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.ID).To(Equal(sim.Instances()[0].ID))
		Expect(fleetCalls()).To(BeEmpty())
		Expect(sim.Requests()[0].Action).To(Equal("DescribeInstances"))
	})

	It("deletes what was launched for a NodeClaim that never learned its instance", func() {
		c := claim("unlearned", "on-demand")
		_, err := launcher.Launch(ctx, c, class)
		Expect(err).NotTo(HaveOccurred())
		Expect(launcher.Delete(ctx, c)).To(Succeed(), "no provider id: found by the NodeClaim's tag")
		Expect(sim.Instances()[0].State).To(Or(Equal("shutting-down"), Equal("terminated")))
		Expect(launcher.Delete(ctx, claim("never-launched", "spot"))).To(Succeed())
	})

	It("marks Spot ICE per offering and moves to On-Demand once every Spot offering is marked", func() {
		reg := prometheus.NewRegistry()
		launcher.CountFailures(reg)
		sim.SetFaults(ec2sim.Faults{Capacity: []ec2sim.CapacityRule{{CapacityType: "spot", Max: 0}}})
		_, err := launcher.Launch(ctx, claim("f", "spot", "on-demand"), class)
		Expect(cloudprovider.IsInsufficientCapacity(err)).To(BeTrue(), "%v", err)
		refused, series := test.Metric(reg, "backstop_offering_launch_failures_total", map[string]string{"nodepool": "batch",
			"instance_type": "m5.large", "capacity_type": "spot", "zone": "us-east-1a", "zone_id": "use1-az4", "reason": "InsufficientInstanceCapacity"})
		Expect(series).To(Equal(1), "one series per offering refused, with its zone id")
		Expect(refused).To(Equal(1.0))
		Expect(err.Error()).To(ContainSubstring("InsufficientInstanceCapacity"))
		Expect(unavailable.IsUnavailable("m5.large", "us-east-1a", "spot")).To(BeTrue())
		Expect(unavailable.IsUnavailable("m5.large", "us-east-1a", "on-demand")).To(BeFalse())

		inst, err := launcher.Launch(ctx, claim("g", "spot", "on-demand"), class)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.CapacityType).To(Equal("on-demand"))
		Expect(fleetCalls()).To(HaveLen(2), "one failed Spot call, then On-Demand")
	})

	It("marks all of Spot on MaxSpotInstanceCountExceeded: On-Demand on the very next launch", func() {
		sim.SetFaults(ec2sim.Faults{SpotVCPUQuota: ptr.To[int64](0)})
		_, err := launcher.Launch(ctx, claim("h", "spot", "on-demand"), class)
		Expect(cloudprovider.IsInsufficientCapacity(err)).To(BeTrue())
		Expect(err.Error()).To(ContainSubstring("Spot vCPU quota is used up"))
		inst, err := launcher.Launch(ctx, claim("i", "spot", "on-demand"), class)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.CapacityType).To(Equal("on-demand"))
		spotCalls := 0
		for _, r := range fleetCalls() {
			if r.Params["TargetCapacitySpecification.DefaultTargetCapacityType"] == "spot" {
				spotCalls++
			}
		}
		Expect(spotCalls).To(Equal(1), "one failed Spot call in total")
	})

	It("reports a missing Spot service-linked role with the fix", func() {
		sim.SetFaults(ec2sim.Faults{NoSpotServiceLinkedRole: true})
		_, err := launcher.Launch(ctx, claim("j", "spot"), class)
		Expect(cloudprovider.IsInsufficientCapacity(err)).To(BeTrue())
		Expect(err.Error()).To(ContainSubstring("aws iam create-service-linked-role --aws-service-name spot.amazonaws.com"))
		_, err = launcher.Launch(ctx, claim("k", "spot"), class)
		Expect(err).To(MatchError(ContainSubstring("NoAvailableOffering")), "a Spot-only claim has nowhere to go")
	})
})

var _ = Describe("instances", func() {
	ctx := context.Background()

	It("gets, lists by cluster tag and terminates instances, treating a vanished one as gone", func() {
		_, _, url := test.StartEC2Simulator(ec2sim.Config{ClusterTag: "local"}, clock.RealClock{})
		launcher := test.NewLaunch(url, "local", "this-process").Launcher
		var err error
		class := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: awsv1.EC2NodeClassSpec{
			Role: "KarpenterNodeRole-local", AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "local"}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "local"}}},
		}}
		class.Status, err = test.NewResolver(url, "local").Resolve(ctx, class)
		Expect(err).NotTo(HaveOccurred())
		inst, err := launcher.Launch(ctx, &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "x", UID: "uid-x",
			Annotations: map[string]string{cloudprovider.CreatedByAnnotation: "this-process"}}, Spec: v1.NodeClaimSpec{
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"m5.large"}}},
		}}, class)
		Expect(err).NotTo(HaveOccurred())

		got, err := launcher.Get(ctx, inst.ProviderID)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.InstanceType).To(Equal("m5.large"))
		Expect(got.Labels).To(HaveKeyWithValue("karpenter.sh/nodeclaim", "x"))
		listed, err := launcher.List(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(listed).To(HaveLen(1))

		byID := func(id string) *v1.NodeClaim { return &v1.NodeClaim{Status: v1.NodeClaimStatus{ProviderID: id}} }
		Expect(launcher.Delete(ctx, byID(inst.ProviderID))).To(Succeed())
		_, err = launcher.Get(ctx, inst.ProviderID)
		Expect(cloudprovider.IsNotFound(err)).To(BeTrue(), "a terminated instance is gone")
		Expect(launcher.Delete(ctx, byID(inst.ProviderID))).To(Succeed(), "terminating twice is fine")
		listed, err = launcher.List(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(listed).To(BeEmpty())

		_, err = launcher.Get(ctx, "aws:///us-east-1a/i-0000000000000dead")
		Expect(cloudprovider.IsNotFound(err)).To(BeTrue())
		Expect(launcher.Delete(ctx, byID("aws:///us-east-1a/i-0000000000000dead"))).To(Succeed(), "terminating an unknown instance is success")
		_, err = launcher.Get(ctx, "gce://nope")
		Expect(err).To(MatchError(ContainSubstring("is not of the form aws:///<zone>/<instance-id>")))
	})
})

var _ = Describe("drift of a launched NodeClaim from its EC2NodeClass", func() {
	var (
		ctx       = context.Background()
		launcher  *aws.Launcher
		offerings *aws.Offerings
		class     *awsv1.EC2NodeClass
		claim     *v1.NodeClaim
	)

	// provider reads the class as it is now, as the controller's cache does.
	provider := func() *aws.CloudProvider {
		kube := crfake.NewClientBuilder().WithScheme(test.Scheme).WithObjects(class.DeepCopy()).Build()
		return aws.New(kube, launcher, offerings)
	}

	BeforeEach(func() {
		var simURL string
		_, _, simURL = test.StartEC2Simulator(ec2sim.Config{ClusterTag: "my-cluster"}, clock.RealClock{})
		path := test.NewLaunch(simURL, "my-cluster", "this-process")
		launcher, offerings = path.Launcher, path.Offerings
		var err error
		class = &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: awsv1.EC2NodeClassSpec{
			Role: "KarpenterNodeRole-my-cluster", AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
			SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
		}}
		class.Status, err = test.NewResolver(simURL, "my-cluster").Resolve(ctx, class)
		Expect(err).NotTo(HaveOccurred())
		class.Status.Conditions = []metav1.Condition{{Type: awsv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", LastTransitionTime: metav1.Now()}}

		claim = &v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "drifting", UID: "uid-drifting", Labels: map[string]string{v1.NodePoolLabelKey: "batch"},
				Annotations: map[string]string{cloudprovider.CreatedByAnnotation: "this-process"}},
			Spec: v1.NodeClaimSpec{NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
				Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"m5.large"}}}},
		}
		inst, err := provider().Create(ctx, claim)
		Expect(err).NotTo(HaveOccurred())
		// What the launch controller records on the NodeClaim.
		for k, v := range inst.Annotations {
			claim.Annotations[k] = v
		}
		claim.Status.ProviderID, claim.Status.ImageID = inst.ProviderID, inst.ImageID
	})

	It("offers the planner only the instance types one of the class's images boots", func() {
		pool := &v1.NodePool{Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"}}}}}
		names := func() map[string]bool {
			types, err := provider().InstanceTypes(ctx, pool)
			Expect(err).NotTo(HaveOccurred())
			out := map[string]bool{}
			for _, it := range types {
				out[it.Name] = true
			}
			return out
		}
		Expect(names()).To(And(HaveKey("m5.large"), HaveKey("m6g.large"), HaveKey("g5.xlarge"), HaveKey("inf2.xlarge")), "standard, NVIDIA and Neuron images")
		Expect(names()).NotTo(HaveKey("g4ad.xlarge"), "no EKS image drives AMD GPUs")
		var standard []awsv1.AMI
		for _, a := range class.Status.AMIs {
			if strings.Contains(a.Name, "-standard-") {
				standard = append(standard, a)
			}
		}
		class.Status.AMIs = standard
		Expect(names()).To(And(HaveKey("m5.large"), HaveKey("m6g.large"), Not(HaveKey("g5.xlarge")), Not(HaveKey("inf2.xlarge"))),
			"with standard images only, GPU and Neuron types are not offered")
	})

	It("offers a Windows class's types as Windows nodes: the OS, the build, the pods' addresses, and no arm64", func() {
		pool := &v1.NodePool{Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"}}}}}
		byName := func() map[string]*scheduling.InstanceType {
			types, err := provider().InstanceTypes(ctx, pool)
			Expect(err).NotTo(HaveOccurred())
			out := map[string]*scheduling.InstanceType{}
			for _, it := range types {
				out[it.Name] = it
			}
			return out
		}
		linux := class.DeepCopy()
		// What a windows2022@latest alias resolves to: one x86_64 image,
		// for types without GPUs or accelerators.
		class.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "windows2022@latest"}}
		var amd64 []awsv1.AMI
		for _, a := range class.Status.AMIs {
			if strings.Contains(a.Name, "x86_64-standard") {
				amd64 = append(amd64, a)
			}
		}
		Expect(amd64).To(HaveLen(1))
		class.Status.AMIs = amd64
		types := byName()
		Expect(types).To(HaveKey("m5.large"))
		Expect(types).NotTo(HaveKey("m6g.large"), "no arm64 Windows image")
		m5 := types["m5.large"]
		Expect(m5.Requirements.Labels()).To(HaveKeyWithValue(corev1.LabelOSStable, "windows"))
		Expect(m5.Requirements.Labels()).To(HaveKeyWithValue(corev1.LabelWindowsBuild, "10.0.20348"))
		Expect(m5.Capacity.Extended).To(HaveKeyWithValue(aws.ResourcePrivateIPv4Address, int64(9)), "ten addresses per interface, one the node's own")

		class = linux
		m5 = byName()["m5.large"]
		Expect(m5.Requirements.Labels()).To(HaveKeyWithValue(corev1.LabelOSStable, "linux"), "a Linux class's list is its own")
		Expect(m5.Requirements.Labels()).NotTo(HaveKey(corev1.LabelWindowsBuild))
		Expect(m5.Capacity.Extended).NotTo(HaveKey(aws.ResourcePrivateIPv4Address))
	})

	DescribeTable("says why, or nothing when nothing changed",
		func(want cloudprovider.DriftReason, change func()) {
			change()
			got, err := provider().IsDrifted(ctx, claim)
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(want))
		},
		Entry("nothing changed", cloudprovider.DriftReason(""), func() {}),
		Entry("the selector terms were rewritten to resolve the same", cloudprovider.DriftReason(""), func() {
			class.Spec.SubnetSelectorTerms = append(class.Spec.SubnetSelectorTerms, awsv1.SubnetSelectorTerm{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}})
		}),
		Entry("the spec changed (tags)", cloudprovider.NodeClassDrift, func() { class.Spec.Tags = map[string]string{"team": "payments"} }),
		Entry("the spec changed (connection tracking)", cloudprovider.NodeClassDrift, func() {
			class.Spec.ConnectionTracking = &awsv1.ConnectionTracking{UDPTimeout: ptr.To[int32](30)}
		}),
		Entry("only ipPrefixCount changed, which applies to new nodes (as in Karpenter)", cloudprovider.DriftReason(""), func() {
			class.Spec.IPPrefixCount = ptr.To[int32](1)
		}),
		Entry("only fields Backstop does not act on, and capacity reservation terms (as in Karpenter), were added", cloudprovider.DriftReason(""), func() {
			class.Spec.NetworkInterfaces = []awsv1.NetworkInterface{{InterfaceType: "interface"}}
			class.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{ID: "cr-0123456789abcdef0"}}
		}),
		Entry("a placement group selector was added that has not resolved yet (drift is judged on the group it resolves to)", cloudprovider.DriftReason(""), func() {
			class.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: ptr.To("training")}
		}),
		Entry("the class now resolves to a placement group the instance is not in", cloudprovider.PlacementGroupDrift, func() {
			class.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: ptr.To("training")}
			class.Status.PlacementGroup = &awsv1.PlacementGroup{ID: "pg-0123456789abcdef0", Name: "training", Strategy: awsv1.PlacementStrategyCluster}
		}),
		Entry("the resolved AMIs no longer include the instance's", cloudprovider.AMIDrift, func() {
			class.Status.AMIs = []awsv1.AMI{{ID: "ami-0123456789abcdef0", Name: "newer"}}
		}),
		Entry("the resolved subnets no longer include the instance's", cloudprovider.SubnetDrift, func() {
			class.Status.Subnets = []awsv1.Subnet{{ID: "subnet-elsewhere", Zone: "us-east-1a"}}
		}),
		Entry("the resolved security groups are not the instance's", cloudprovider.SecurityGroupDrift, func() {
			class.Status.SecurityGroups = append(class.Status.SecurityGroups, awsv1.SecurityGroup{ID: "sg-added"})
		}),
		Entry("a hash another version stamped is not compared", cloudprovider.DriftReason(""), func() {
			class.Spec.Tags = map[string]string{"team": "payments"}
			claim.Annotations[awsv1.NodeClassHashVersionAnnotationKey] = "v4"
		}),
	)
})
