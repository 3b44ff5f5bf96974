package scheduling_test

import (
	"math/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// realCatalog is the 1,363 EC2 instance types of the embedded catalog, offered
// on demand at their us-east-1 price and as Spot at a seeded 25-45% of it, in
// three zones.
func realCatalog(seed int64) ([]*scheduling.InstanceType, error) {
	facts, err := catalog.Load()
	if err != nil {
		return nil, err
	}
	r := rand.New(rand.NewSource(seed))
	zones := []string{"us-east-1a", "us-east-1b", "us-east-1c"}
	var out []*scheduling.InstanceType
	for _, f := range facts {
		od := f.OnDemandPriceUSD["us-east-1"]
		if od <= 0 {
			continue
		}
		var offerings []scheduling.Offering
		for _, z := range zones {
			offerings = append(offerings,
				scheduling.Offering{Zone: z, CapacityType: v1.CapacityTypeOnDemand, Price: od, Available: true},
				scheduling.Offering{Zone: z, CapacityType: v1.CapacityTypeSpot, Price: od * (0.25 + 0.2*r.Float64()), Available: true})
		}
		it, err := aws.NewInstanceType(f, offerings, aws.AllocatableOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// readmePools are the README's two NodePools: Spot at weight 100, On-Demand at 10.
func readmePools(types []*scheduling.InstanceType) []*scheduling.NodePool {
	return []*scheduling.NodePool{
		{Name: "batch", Weight: 100, InstanceTypes: types, Requirements: scheduling.NewRequirements(scheduling.MustRequirement(v1.CapacityTypeLabelKey, v1.OpIn, v1.CapacityTypeSpot)),
			Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100000")}},
		{Name: "batch-fallback", Weight: 10, InstanceTypes: types, Requirements: scheduling.NewRequirements(scheduling.MustRequirement(v1.CapacityTypeLabelKey, v1.OpIn, v1.CapacityTypeOnDemand))},
	}
}

// BenchmarkRealCatalog plans 10,000 diverse pods over the real EC2 catalog:
//
//	go test ./pkg/scheduling -run '^$' -bench RealCatalog -benchmem
func BenchmarkRealCatalog(b *testing.B) {
	types, err := realCatalog(42)
	if err != nil {
		b.Fatal(err)
	}
	pods := diversePods(10000, 42)
	var plan *scheduling.Plan
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		plan = scheduling.Solve(&scheduling.Input{Pods: pods, NodePools: readmePools(types)})
	}
	reportPlan(b, plan, len(pods), time.Since(start))
}
