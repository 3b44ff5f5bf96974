package aws_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

// discoveries counts the discovery rounds the simulator saw: first pages of DescribeInstanceTypes.
func discoveries(sim *ec2sim.Server) int {
	n := 0
	for _, r := range sim.Requests() {
		if r.Action == "DescribeInstanceTypes" && r.Params["NextToken"] == "" && r.Error == "" {
			n++
		}
	}
	return n
}

var _ = Describe("offerings from EC2", func() {
	var (
		ctx         = context.Background()
		clk         *clocktesting.FakeClock
		sim         *ec2sim.Server
		offerings   *aws.Offerings
		unavailable *aws.UnavailableOfferings
	)
	BeforeEach(func() {
		clk = clocktesting.NewFakeClock(time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC))
		var client = test.EC2Client("")
		sim, client, _ = test.StartEC2Simulator(ec2sim.Config{}, clk)
		unavailable = aws.NewUnavailableOfferings(clk, 3*time.Minute, nil)
		var err error
		offerings, err = aws.NewOfferings(client, "us-east-1", clk, 5*time.Minute, unavailable, aws.AllocatableOptions{})
		Expect(err).NotTo(HaveOccurred())
	})

	byName := func(types []*scheduling.InstanceType) map[string]*scheduling.InstanceType {
		out := map[string]*scheduling.InstanceType{}
		for _, it := range types {
			out[it.Name] = it
		}
		return out
	}

	It("lists every priced type with on-demand and Spot offerings per zone, computed as from the catalog", func() {
		types, err := offerings.InstanceTypes(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(types).To(HaveLen(1345), "the 1,363 types less the 18 without a public on-demand price")
		m5 := byName(types)["m5.large"]
		Expect(m5.Offerings).To(HaveLen(6))
		for _, o := range m5.Offerings {
			Expect(o.Available).To(BeTrue())
			if o.CapacityType == v1.CapacityTypeSpot {
				Expect(o.Price).To(BeNumerically("<", 0.096*0.46))
			} else {
				Expect(o.Price).To(Equal(0.096))
			}
		}
		facts, err := catalog.Load()
		Expect(err).NotTo(HaveOccurred())
		compared := 0
		for _, f := range facts {
			// A plain type, a GPU type and a Neuron type.
			if f.Name == "m5.large" || f.Name == "g5.xlarge" || f.Name == "inf2.xlarge" {
				compared++
				fromEC2 := byName(types)[f.Name]
				fromCatalog, err := aws.NewInstanceType(f, nil, aws.AllocatableOptions{})
				Expect(err).NotTo(HaveOccurred())
				Expect(fromEC2.Capacity).To(Equal(fromCatalog.Capacity), "EC2's description of %s yields the same capacity", f.Name)
				Expect(fromEC2.Overhead).To(Equal(fromCatalog.Overhead))
				Expect(fromEC2.Requirements.String()).To(Equal(fromCatalog.Requirements.String()), "and the same labels")
			}
		}
		Expect(compared).To(Equal(3))
		Expect(byName(types)["inf2.xlarge"].Capacity.Extended).To(HaveKeyWithValue(aws.ResourceNeuronCore, int64(2)),
			"EC2's coreInfo gives the NeuronCores")
	})

	It("publishes every offering's price with Karpenter's series name and labels", func() {
		reg := prometheus.NewRegistry()
		offerings.ExportPrices(reg)
		types, err := offerings.InstanceTypes(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		m5 := byName(types)["m5.large"]
		for _, o := range m5.Offerings {
			price, series := test.Metric(reg, "karpenter_cloudprovider_instance_type_offering_price_estimate",
				map[string]string{"instance_type": "m5.large", "capacity_type": o.CapacityType, "zone": o.Zone})
			Expect(series).To(Equal(1), "%s %s", o.CapacityType, o.Zone)
			Expect(price).To(Equal(o.Price), "%s %s", o.CapacityType, o.Zone)
		}
	})

	It("publishes the price of a class's reserved offerings too, once per type and zone", func() {
		reg := prometheus.NewRegistry()
		offerings.ExportPrices(reg).WithReservations(aws.NewReservations(clk))
		nc := &awsv1.EC2NodeClass{Status: awsv1.EC2NodeClassStatus{CapacityReservations: []awsv1.CapacityReservation{
			{ID: "cr-1", InstanceType: "m5.large", AvailabilityZone: "us-east-1b", ReservationType: "default", State: "active"},
			{ID: "cr-2", InstanceType: "m5.large", AvailabilityZone: "us-east-1b", ReservationType: "default", State: "active"}}}}
		types, err := offerings.InstanceTypes(ctx, nc)
		Expect(err).NotTo(HaveOccurred())
		var reserved []scheduling.Offering
		for _, o := range byName(types)["m5.large"].Offerings {
			if o.CapacityType == v1.CapacityTypeReserved {
				reserved = append(reserved, o)
			}
		}
		Expect(reserved).To(HaveLen(2))
		price, series := test.Metric(reg, "karpenter_cloudprovider_instance_type_offering_price_estimate",
			map[string]string{"instance_type": "m5.large", "capacity_type": "reserved", "zone": "us-east-1b"})
		Expect(series).To(Equal(1))
		Expect(price).To(Equal(reserved[0].Price))
		Expect(price).To(BeNumerically(">", 0))
	})

	It("keeps the zones of the EC2NodeClass's subnets, less subnets out of addresses", func() {
		nc := &awsv1.EC2NodeClass{Status: awsv1.EC2NodeClassStatus{Subnets: []awsv1.Subnet{{ID: "subnet-a", Zone: "us-east-1a"}, {ID: "subnet-b", Zone: "us-east-1b"}}}}
		unavailable.Mark(aws.Unavailable{Scope: aws.ScopeSubnet, Subnet: "subnet-b"})
		types, err := offerings.InstanceTypes(ctx, nc)
		Expect(err).NotTo(HaveOccurred())
		for _, o := range byName(types)["m5.large"].Offerings {
			Expect(o.Zone).To(Equal("us-east-1a"))
		}
	})

	It("offers nothing when every subnet of the EC2NodeClass is out of addresses, rather than every zone", func() {
		nc := &awsv1.EC2NodeClass{Status: awsv1.EC2NodeClassStatus{Subnets: []awsv1.Subnet{{ID: "subnet-a", Zone: "us-east-1a"}}}}
		unavailable.Mark(aws.Unavailable{Scope: aws.ScopeSubnet, Subnet: "subnet-a"})
		types, err := offerings.InstanceTypes(ctx, nc)
		Expect(err).NotTo(HaveOccurred())
		Expect(types).To(BeEmpty(), "no subnet can take an instance")
	})

	It("reports marked offerings as unavailable", func() {
		unavailable.Mark(aws.Unavailable{Scope: aws.ScopeCapacityType, CapacityType: v1.CapacityTypeSpot, Code: "MaxSpotInstanceCountExceeded"})
		types, err := offerings.InstanceTypes(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		for _, o := range byName(types)["c5.large"].Offerings {
			Expect(o.Available).To(Equal(o.CapacityType == v1.CapacityTypeOnDemand), "%+v", o)
		}
	})

	It("says when an offering was last refused, after its mark has expired too, for an hour", func() {
		spotOf := func(name, zone string) scheduling.Offering {
			types, err := offerings.InstanceTypes(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			for _, o := range byName(types)[name].Offerings {
				if o.CapacityType == v1.CapacityTypeSpot && o.Zone == zone {
					return o
				}
			}
			Fail("no Spot offering of " + name + " in " + zone)
			return scheduling.Offering{}
		}
		Expect(spotOf("c5.large", "us-east-1a").LastUnavailable.IsZero()).To(BeTrue(), "never refused")
		markedAt := clk.Now()
		unavailable.Mark(aws.Unavailable{Scope: aws.ScopeOffering, CapacityType: v1.CapacityTypeSpot, InstanceType: "c5.large", Zone: "us-east-1a", Code: "InsufficientInstanceCapacity"})
		clk.Step(4 * time.Minute)
		o := spotOf("c5.large", "us-east-1a")
		Expect(o.Available).To(BeTrue(), "the 3-minute mark expired")
		Expect(o.LastUnavailable).To(BeTemporally("==", markedAt))
		Expect(spotOf("c5.large", "us-east-1b").LastUnavailable.IsZero()).To(BeTrue(), "another zone was not refused")
		Expect(spotOf("m5.large", "us-east-1a").LastUnavailable.IsZero()).To(BeTrue(), "another type was not refused")
		// A capacity-type mark (a Spot quota) counts for every Spot offering.
		unavailable.Mark(aws.Unavailable{Scope: aws.ScopeCapacityType, CapacityType: v1.CapacityTypeSpot, Code: "MaxSpotInstanceCountExceeded"})
		Expect(spotOf("m5.large", "us-east-1a").LastUnavailable).To(BeTemporally("==", clk.Now()))
		clk.Step(61 * time.Minute)
		unavailable.Mark(aws.Unavailable{Scope: aws.ScopeSubnet, Subnet: "subnet-x"})
		Expect(spotOf("c5.large", "us-east-1a").LastUnavailable.IsZero()).To(BeTrue(), "forgotten after an hour")
	})

	It("keeps an answer only while the marks it was built under hold", func() {
		spotAvailable := func(zone string) bool {
			types, err := offerings.InstanceTypes(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			for _, o := range byName(types)["c5.large"].Offerings {
				if o.CapacityType == v1.CapacityTypeSpot && o.Zone == zone {
					return o.Available
				}
			}
			Fail("no Spot offering of c5.large in " + zone)
			return false
		}
		Expect(spotAvailable("us-east-1a")).To(BeTrue())
		unavailable.Mark(aws.Unavailable{Scope: aws.ScopeOffering, CapacityType: v1.CapacityTypeSpot, InstanceType: "c5.large", Zone: "us-east-1a", Code: "InsufficientInstanceCapacity"})
		Expect(spotAvailable("us-east-1a")).To(BeFalse(), "a mark made after the last answer")
		Expect(spotAvailable("us-east-1b")).To(BeTrue())
		clk.Step(time.Minute)
		unavailable.Mark(aws.Unavailable{Scope: aws.ScopeOffering, CapacityType: v1.CapacityTypeSpot, InstanceType: "c5.large", Zone: "us-east-1b", Code: "InsufficientInstanceCapacity"})
		Expect(spotAvailable("us-east-1b")).To(BeFalse())
		clk.Step(2 * time.Minute)
		Expect(spotAvailable("us-east-1a")).To(BeTrue(), "the first mark expired, though nothing else changed")
		Expect(spotAvailable("us-east-1b")).To(BeFalse(), "the second holds a minute longer")
		clk.Step(time.Minute)
		Expect(spotAvailable("us-east-1b")).To(BeTrue())
	})

	It("asks EC2 again only after the TTL, serving the last answer while it does", func() {
		_, err := offerings.InstanceTypes(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		calls := len(sim.Requests())
		_, err = offerings.InstanceTypes(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(sim.Requests()).To(HaveLen(calls), "served from the cache")
		clk.Step(5*time.Minute + time.Second)
		types, err := offerings.InstanceTypes(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(types).To(HaveLen(1345), "the stale answer, at once")
		Eventually(func() int { return discoveries(sim) }).Should(Equal(2), func() string { return fmt.Sprint(sim.Requests()) })
		Consistently(func() int { return discoveries(sim) }, 200*time.Millisecond).Should(Equal(2), "%v", sim.Requests())
	})

	It("runs one refresh for many callers at once", func() {
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				types, err := offerings.InstanceTypes(ctx, nil)
				Expect(err).NotTo(HaveOccurred())
				Expect(types).NotTo(BeEmpty())
			}()
		}
		wg.Wait()
		Expect(discoveries(sim)).To(Equal(1), "twenty callers, one discovery")
	})

	It("tries a throttled page again with backoff instead of starting over", func() {
		offerings.Backoff = time.Second
		// Three throttles use up the SDK's own attempts; the page is tried again after the backoff.
		sim.SetFaults(ec2sim.Faults{ThrottleNext: 3})
		done := make(chan error, 1)
		go func() {
			_, err := offerings.InstanceTypes(ctx, nil)
			done <- err
		}()
		Eventually(clk.HasWaiters).Should(BeTrue(), "waiting out the backoff")
		Consistently(done, 100*time.Millisecond).ShouldNot(Receive())
		clk.Step(time.Second)
		Eventually(done).Should(Receive(BeNil()))
	})

	It("fails discovery with the AWS code when EC2 keeps failing, and returns no empty list", func() {
		offerings.Attempts = 2
		sim.SetFaults(ec2sim.Faults{ThrottleNext: 1000})
		done := make(chan error, 1)
		go func() {
			_, err := offerings.InstanceTypes(ctx, nil)
			done <- err
		}()
		Eventually(clk.HasWaiters).Should(BeTrue())
		clk.Step(time.Minute)
		var err error
		Eventually(done).Should(Receive(&err))
		Expect(err).To(HaveOccurred())
		cause := cloudprovider.CauseOf(err)
		Expect(cause.Code).To(Equal("RequestLimitExceeded"))
		Expect(cause.RequestID).NotTo(BeEmpty())
		Expect(err.Error()).To(ContainSubstring("DescribeInstanceTypes"))
	})
})
