package aws

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// DefaultInstanceTypesTTL is how long instance types, zones and Spot prices
// are reused before EC2 is asked again.
const DefaultInstanceTypesTTL = 5 * time.Minute

// Offerings lists instance types and where and how they can be bought, from
// DescribeInstanceTypes, DescribeInstanceTypeOfferings and
// DescribeSpotPriceHistory, with on-demand prices from the compiled-in catalog.
// Offerings under an unavailability mark are reported unavailable.
//
// Discovery runs off the hot path: Start refreshes at start and every TTL,
// one flight at a time, and callers are served the last good answer while a
// refresh runs. Only a caller that finds nothing yet waits for a refresh; if it
// fails, the caller gets the error (typed, with the AWS code), not an empty list.
type Offerings struct {
	ec2         *ec2.Client
	region      string
	clock       clock.Clock
	ttl         time.Duration
	unavailable *UnavailableOfferings
	// reservations count the room in the classes' capacity reservations.
	reservations *Reservations
	opts         AllocatableOptions
	// Backoff is the first wait before a failed part of a refresh is tried
	// again; it doubles up to MaxBackoff, for Attempts tries in all.
	Backoff    time.Duration
	MaxBackoff time.Duration
	Attempts   int

	mu       sync.Mutex
	flight   *flight
	fetched  time.Time
	facts    []catalog.InstanceType
	zones    map[string][]string
	spot     map[string]map[string]float64
	onDemand map[string]float64
	// converted caches the types built from facts, by kubelet settings, until
	// the next refresh: building 1,300 types is the costly part, offerings
	// (which marks change) are cheap to redo on every call.
	converted map[string]map[string]*scheduling.InstanceType
	// lists keep the last answer per kubelet settings and zones, for as long
	// as the data and the capacity marks it was built from hold: a scale-up
	// plans many times a second, and rebuilding thousands of offerings each
	// time was a fifth of the controller's CPU.
	lists map[string]list
	// reservedPrices are the reserved offerings the lists since the last
	// refresh held, by instance type and zone, for the price series.
	reservedPrices map[typeZone]float64
}

type typeZone struct{ instanceType, zone string }

// ExportPrices publishes every offering's hourly price as
// karpenter_cloudprovider_instance_type_offering_price_estimate, the series
// (and labels) Karpenter users build cost panels on; reserved offerings of
// the classes listed since the last refresh too, at their all-but-free price. The series are made when
// scraped, from the last refresh: kept as gauges, the ~8,000 offerings of a
// region held a fifth of the controller's live heap between scrapes.
func (o *Offerings) ExportPrices(reg prometheus.Registerer) *Offerings {
	reg.MustRegister(&priceCollector{o: o, desc: prometheus.NewDesc("karpenter_cloudprovider_instance_type_offering_price_estimate",
		"Hourly price of an instance type in a zone, by capacity type: the On-Demand list price or the latest Spot price, in USD.",
		[]string{"instance_type", "capacity_type", "zone"}, nil)})
	return o
}

// priceCollector makes the price series of the last refresh at each scrape.
type priceCollector struct {
	o    *Offerings
	desc *prometheus.Desc
}

func (c *priceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect reads the last refresh; a refresh replaces these maps and never
// changes them, so they are read outside the lock.
func (c *priceCollector) Collect(ch chan<- prometheus.Metric) {
	c.o.mu.Lock()
	zones, spot, onDemand := c.o.zones, c.o.spot, c.o.onDemand
	reserved := make(map[typeZone]float64, len(c.o.reservedPrices))
	for k, p := range c.o.reservedPrices {
		reserved[k] = p
	}
	c.o.mu.Unlock()
	for k, p := range reserved {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, p, k.instanceType, v1.CapacityTypeReserved, k.zone)
	}
	for name, in := range zones {
		for _, zone := range in {
			if p, ok := onDemand[name]; ok {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, p, name, v1.CapacityTypeOnDemand, zone)
			}
			if p, ok := spot[name][zone]; ok {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, p, name, v1.CapacityTypeSpot, zone)
			}
		}
	}
}

// list is an answer of InstanceTypes and what it was built from.
type list struct {
	fetched time.Time
	marks   MarksVersion
	types   []*scheduling.InstanceType
}

// flight is one refresh under way; done closes when it ends, with err set.
type flight struct {
	done chan struct{}
	err  error
}

// NewOfferings returns a provider for the region; on-demand prices come from the
// embedded catalog.
func NewOfferings(client *ec2.Client, region string, clk clock.Clock, ttl time.Duration, unavailable *UnavailableOfferings, opts AllocatableOptions) (*Offerings, error) {
	facts, err := catalog.Load()
	if err != nil {
		return nil, err
	}
	prices := map[string]float64{}
	for _, f := range facts {
		if p := f.OnDemandPriceUSD[region]; p > 0 {
			prices[f.Name] = p
		} else if p := f.OnDemandPriceUSD["us-east-1"]; p > 0 {
			prices[f.Name] = p
		}
	}
	return &Offerings{ec2: client, region: region, clock: clk, ttl: ttl, unavailable: unavailable, opts: opts, onDemand: prices,
		Backoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second, Attempts: 5}, nil
}

// WithReservations has the offerings of classes with capacity reservations
// include a reserved offering per reservation, available while the
// tracker counts room in it.
func (o *Offerings) WithReservations(r *Reservations) *Offerings {
	o.reservations = r
	return o
}

// NeedLeaderElection is false: a standby replica keeps its discovery warm too.
func (o *Offerings) NeedLeaderElection() bool { return false }

// Start keeps discovery warm until ctx ends: a refresh at once, then one
// every TTL; a failed refresh is logged at error level and tried again sooner.
func (o *Offerings) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("offerings")
	wait := time.Duration(0)
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-o.clock.After(wait):
		}
		err := o.Refresh(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			wait = min(time.Second<<min(failures, 8), o.ttl)
			cause := cloudprovider.CauseOf(err)
			logger.Error(err, "instance-type discovery failed; serving the last answer and trying again", "error-code", cause.Code,
				"aws-request-id", cause.RequestID, "retry-in", wait.String())
		default:
			failures = 0
			wait = o.ttl
		}
	}
}

// Refresh asks EC2 for instance types, their zones and Spot prices now, and
// waits for the answer; a refresh already under way is joined, not repeated.
func (o *Offerings) Refresh(ctx context.Context) error { return o.await(ctx, o.refresh(ctx)) }

func (o *Offerings) await(ctx context.Context, f *flight) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refresh starts a refresh unless one is under way, and returns it. The
// refresh outlives the caller's context: others may be waiting on it.
func (o *Offerings) refresh(ctx context.Context) *flight {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.refreshLocked(ctx)
}

func (o *Offerings) refreshLocked(ctx context.Context) *flight {
	if o.flight != nil {
		return o.flight
	}
	f := &flight{done: make(chan struct{})}
	o.flight = f
	go func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		d, err := o.fetch(fctx)
		o.mu.Lock()
		if err == nil {
			o.facts, o.zones, o.spot, o.fetched = d.facts, d.zones, d.spot, o.clock.Now()
			o.converted = map[string]map[string]*scheduling.InstanceType{}
			o.lists = map[string]list{}
			o.reservedPrices = nil
		}
		o.flight = nil
		o.mu.Unlock()
		f.err = err
		close(f.done)
	}()
	return f
}

// discovered is what one refresh learns.
type discovered struct {
	facts []catalog.InstanceType
	zones map[string][]string
	spot  map[string]map[string]float64
}

// fetch reads the three parts; each page that fails is tried again with
// backoff, so one throttled call does not throw the rest away.
func (o *Offerings) fetch(ctx context.Context) (*discovered, error) {
	d := &discovered{zones: map[string][]string{}, spot: map[string]map[string]float64{}}
	types := ec2.NewDescribeInstanceTypesPaginator(o.ec2, &ec2.DescribeInstanceTypesInput{})
	for types.HasMorePages() {
		var page *ec2.DescribeInstanceTypesOutput
		if err := o.retry(ctx, "DescribeInstanceTypes", func() (err error) { page, err = types.NextPage(ctx); return err }); err != nil {
			return nil, err
		}
		for i := range page.InstanceTypes {
			d.facts = append(d.facts, factsOf(&page.InstanceTypes[i]))
		}
	}
	offerings := ec2.NewDescribeInstanceTypeOfferingsPaginator(o.ec2, &ec2.DescribeInstanceTypeOfferingsInput{LocationType: ec2types.LocationTypeAvailabilityZone})
	for offerings.HasMorePages() {
		var page *ec2.DescribeInstanceTypeOfferingsOutput
		if err := o.retry(ctx, "DescribeInstanceTypeOfferings", func() (err error) { page, err = offerings.NextPage(ctx); return err }); err != nil {
			return nil, err
		}
		for _, off := range page.InstanceTypeOfferings {
			name, zone := string(off.InstanceType), aws.ToString(off.Location)
			d.zones[name] = append(d.zones[name], zone)
		}
	}
	prices := ec2.NewDescribeSpotPriceHistoryPaginator(o.ec2, &ec2.DescribeSpotPriceHistoryInput{
		ProductDescriptions: []string{"Linux/UNIX"}, StartTime: aws.Time(o.clock.Now()),
	})
	for prices.HasMorePages() {
		var page *ec2.DescribeSpotPriceHistoryOutput
		if err := o.retry(ctx, "DescribeSpotPriceHistory", func() (err error) { page, err = prices.NextPage(ctx); return err }); err != nil {
			return nil, err
		}
		for _, sp := range page.SpotPriceHistory {
			price, err := strconv.ParseFloat(aws.ToString(sp.SpotPrice), 64)
			if err != nil {
				continue
			}
			name := string(sp.InstanceType)
			if d.spot[name] == nil {
				d.spot[name] = map[string]float64{}
			}
			d.spot[name][aws.ToString(sp.AvailabilityZone)] = price
		}
	}
	return d, nil
}

// retry calls fn until it succeeds, Attempts times at most, waiting Backoff,
// then twice that, between tries.
func (o *Offerings) retry(ctx context.Context, operation string, fn func() error) error {
	wait := o.Backoff
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		if attempt >= o.Attempts || ctx.Err() != nil {
			return retryable(operation, err)
		}
		select {
		case <-ctx.Done():
			return retryable(operation, err)
		case <-o.clock.After(wait):
		}
		wait = min(2*wait, o.MaxBackoff)
	}
}

// InstanceTypes lists what a NodePool's EC2NodeClass can launch. The zones are
// those of the class's resolved subnets when it has them. Stale data is served
// while a refresh runs; only with no data at all does the call wait.
func (o *Offerings) InstanceTypes(ctx context.Context, nodeClass *awsv1.EC2NodeClass) ([]*scheduling.InstanceType, error) {
	o.mu.Lock()
	if o.fetched.IsZero() {
		f := o.refreshLocked(ctx)
		o.mu.Unlock()
		if err := o.await(ctx, f); err != nil {
			return nil, fmt.Errorf("discovering instance types: %w", err)
		}
		o.mu.Lock()
	} else if o.clock.Since(o.fetched) > o.ttl {
		o.refreshLocked(ctx)
	}
	defer o.mu.Unlock()
	allowedZones := map[string]bool{}
	zoneIDs := map[string]string{}
	// restricted: only allowedZones may be offered (a class with subnets, or
	// with a cluster group's zone), even when that leaves none.
	restricted := false
	if nodeClass != nil {
		// A cluster placement group's instances all run in its zone.
		groupZone := ""
		if pg := nodeClass.Status.PlacementGroup; pg != nil {
			groupZone = pg.Zone
		}
		restricted = len(nodeClass.Status.Subnets) > 0 || groupZone != ""
		for _, s := range nodeClass.Status.Subnets {
			if (o.unavailable == nil || !o.unavailable.SubnetUnavailable(s.ID)) && (groupZone == "" || s.Zone == groupZone) {
				allowedZones[s.Zone] = true
			}
			if s.ZoneID != "" {
				zoneIDs[s.Zone] = s.ZoneID
			}
		}
	}
	opts := o.opts
	if nodeClass != nil {
		opts.Kubelet = nodeClass.Spec.Kubelet
		opts.WindowsBuild = WindowsBuilds[Family(nodeClass)]
		if pg := nodeClass.Status.PlacementGroup; pg != nil {
			opts.PlacementGroupID = pg.ID
			if pg.Strategy == awsv1.PlacementStrategyPartition {
				opts.PlacementGroupPartitions = pg.PartitionCount
			}
		}
	}
	key, err := json.Marshal(opts)
	if err != nil {
		return nil, err
	}
	zones := make([]string, 0, len(allowedZones))
	for z := range allowedZones {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	launchable := launchableBy(nodeClass)
	reserved := map[string][]awsv1.CapacityReservation{}
	var reservedKey strings.Builder
	if nodeClass != nil {
		for _, cr := range nodeClass.Status.CapacityReservations {
			if reservationLaunchable(cr) {
				reserved[cr.InstanceType] = append(reserved[cr.InstanceType], cr)
				reservedKey.WriteString(cr.ID + ",")
			}
		}
		if reservedKey.Len() > 0 {
			fmt.Fprintf(&reservedKey, "v%d", o.reservations.Version())
		}
	}
	listKey := string(key) + "|" + strconv.FormatBool(restricted) + ":" + strings.Join(zones, ",") + "|" + launchable.key + "|" + reservedKey.String()
	marks := MarksVersion{}
	if o.unavailable != nil {
		marks = o.unavailable.Version()
	}
	if l, ok := o.lists[listKey]; ok && l.fetched.Equal(o.fetched) && marks.Same(l.marks, o.clock.Now()) {
		// A new slice, so a caller that reorders it cannot disturb the next.
		return append([]*scheduling.InstanceType(nil), l.types...), nil
	}
	cache := o.converted[string(key)]
	if cache == nil {
		cache = map[string]*scheduling.InstanceType{}
		o.converted[string(key)] = cache
	}
	out := make([]*scheduling.InstanceType, 0, len(o.facts))
	for _, f := range o.facts {
		if !launchable.can(f) {
			continue
		}
		// Sized for both capacity types in every zone: grown by append it
		// held a third more, for every type of every list.
		offerings := make([]scheduling.Offering, 0, 2*len(o.zones[f.Name])+len(reserved[f.Name]))
		for _, zone := range o.zones[f.Name] {
			if restricted && !allowedZones[zone] {
				continue
			}
			if p, ok := o.onDemand[f.Name]; ok {
				offerings = append(offerings, o.offering(f.Name, zone, zoneIDs[zone], v1.CapacityTypeOnDemand, launchable.placementGroup, p))
			}
			if p, ok := o.spot[f.Name][zone]; ok {
				offerings = append(offerings, o.offering(f.Name, zone, zoneIDs[zone], v1.CapacityTypeSpot, launchable.placementGroup, p))
			}
		}
		for _, cr := range reserved[f.Name] {
			if restricted && !allowedZones[cr.AvailabilityZone] {
				continue
			}
			room := o.reservations.Available(cr.ID)
			price := o.onDemand[f.Name] / reservedPriceDivisor
			offerings = append(offerings, scheduling.Offering{Zone: cr.AvailabilityZone, ZoneID: zoneIDs[cr.AvailabilityZone], CapacityType: v1.CapacityTypeReserved,
				Price: price, Available: room > 0, ReservationID: cr.ID, ReservationCapacity: room})
			if o.reservedPrices == nil {
				o.reservedPrices = map[typeZone]float64{}
			}
			o.reservedPrices[typeZone{f.Name, cr.AvailabilityZone}] = price
		}
		if len(offerings) == 0 {
			continue
		}
		base, ok := cache[f.Name]
		if !ok {
			if base, err = NewInstanceType(f, nil, opts); err != nil {
				return nil, err
			}
			cache[f.Name] = base
		}
		// A copy per list: the shared parts (requirements, capacity) and
		// the offerings are never changed by their users.
		it := *base
		it.Offerings = offerings
		out = append(out, &it)
	}
	if o.lists == nil {
		o.lists = map[string]list{}
	}
	o.lists[listKey] = list{fetched: o.fetched, marks: marks, types: out}
	return append([]*scheduling.InstanceType(nil), out...), nil
}

// launchable is what a class's launch settings ask of an instance type:
// a processor that nests virtualization, an interface with room for the
// prefixes. EC2 refuses a type without them, so none is offered.
type launchable struct {
	nested   bool
	prefixes int64
	// placementGroup and placementStrategy are the class's placement group
	// (its id) and the group's strategy: a type that EC2 does not let into
	// groups of that strategy is not offered.
	placementGroup, placementStrategy string
	key                               string
}

func launchableBy(class *awsv1.EC2NodeClass) launchable {
	var l launchable
	if class != nil {
		if o := class.Spec.CPUOptions; o != nil && aws.ToString(o.NestedVirtualization) == "enabled" {
			l.nested = true
		}
		l.prefixes = int64(aws.ToInt32(class.Spec.IPPrefixCount))
		if pg := class.Status.PlacementGroup; pg != nil {
			l.placementGroup, l.placementStrategy = pg.ID, pg.Strategy
		}
	}
	l.key = fmt.Sprintf("%t/%d/%s/%s", l.nested, l.prefixes, l.placementGroup, l.placementStrategy)
	return l
}

func (l launchable) can(f catalog.InstanceType) bool {
	if l.nested && !f.Supports(catalog.FeatureNestedVirtualization) {
		return false
	}
	// A type EC2 describes no strategies for is left to EC2 to judge.
	if l.placementStrategy != "" && len(f.PlacementStrategies) > 0 && !f.SupportsPlacement(l.placementStrategy) {
		return false
	}
	// Each prefix takes an address slot of the interface; the primary
	// address takes one more.
	return l.prefixes == 0 || l.prefixes+1 <= f.IPv4PerENI
}

func (o *Offerings) offering(instanceType, zone, zoneID, capacityType, placementGroup string, price float64) scheduling.Offering {
	if o.unavailable == nil {
		return scheduling.Offering{Zone: zone, ZoneID: zoneID, CapacityType: capacityType, Price: price, Available: true}
	}
	return scheduling.Offering{Zone: zone, ZoneID: zoneID, CapacityType: capacityType, Price: price,
		Available:       !o.unavailable.IsUnavailableIn(instanceType, zone, capacityType, placementGroup),
		LastUnavailable: o.unavailable.LastMarkedIn(instanceType, zone, capacityType, placementGroup)}
}

var typeName = regexp.MustCompile(`^([a-z]+)(\d+)?([a-z0-9-]*)\.(.+)$`)

// factsOf reads what Backstop needs of an instance type from EC2's description.
func factsOf(info *ec2types.InstanceTypeInfo) catalog.InstanceType {
	f := catalog.InstanceType{Name: string(info.InstanceType), OS: "linux", BareMetal: aws.ToBool(info.BareMetal), Burstable: aws.ToBool(info.BurstablePerformanceSupported)}
	if m := typeName.FindStringSubmatch(f.Name); m != nil {
		f.Category, f.Size = m[1], m[4]
		f.Generation, _ = strconv.Atoi(m[2])
		f.Family = strings.SplitN(f.Name, ".", 2)[0]
	}
	if info.VCpuInfo != nil {
		f.VCPU = int64(aws.ToInt32(info.VCpuInfo.DefaultVCpus))
	}
	if info.MemoryInfo != nil {
		f.MemoryMiB = aws.ToInt64(info.MemoryInfo.SizeInMiB)
	}
	f.Hypervisor = string(info.Hypervisor)
	if info.ProcessorInfo != nil {
		for _, a := range info.ProcessorInfo.SupportedArchitectures {
			switch a {
			case ec2types.ArchitectureTypeX8664:
				f.Arch = "amd64"
			case ec2types.ArchitectureTypeArm64:
				f.Arch = "arm64"
			}
		}
		f.CPUManufacturer = strings.ToLower(aws.ToString(info.ProcessorInfo.Manufacturer))
		for _, feature := range info.ProcessorInfo.SupportedFeatures {
			f.SupportedFeatures = append(f.SupportedFeatures, string(feature))
		}
		// In whole MHz, so requirements can compare it with Gt and Lt.
		f.SustainedClockSpeedMHz = int64(math.Round(aws.ToFloat64(info.ProcessorInfo.SustainedClockSpeedInGhz) * 1000))
	}
	if n := info.NetworkInfo; n != nil {
		f.MaxENIs = int64(aws.ToInt32(n.MaximumNetworkInterfaces))
		f.IPv4PerENI = int64(aws.ToInt32(n.Ipv4AddressesPerInterface))
		f.NetworkBandwidthMbps = bandwidthMbps(aws.ToString(n.NetworkPerformance))
		f.EncryptionInTransit = aws.ToBool(n.EncryptionInTransitSupported)
	}
	if pg := info.PlacementGroupInfo; pg != nil {
		for _, s := range pg.SupportedStrategies {
			f.PlacementStrategies = append(f.PlacementStrategies, string(s))
		}
	}
	// The ENI limit on pods, as the VPC CNI computes it: every address but each
	// interface's primary, plus two host-network pods.
	f.MaxPodsENI = f.MaxENIs*(f.IPv4PerENI-1) + 2
	if g := info.GpuInfo; g != nil && len(g.Gpus) > 0 {
		d := g.Gpus[0]
		f.GPU = &catalog.GPU{Name: strings.ToLower(aws.ToString(d.Name)), Manufacturer: strings.ToLower(aws.ToString(d.Manufacturer)), Count: int64(aws.ToInt32(d.Count))}
		if d.MemoryInfo != nil {
			f.GPU.MemoryMiB = int64(aws.ToInt32(d.MemoryInfo.SizeInMiB))
		}
	}
	if n := info.NeuronInfo; n != nil && len(n.NeuronDevices) > 0 {
		d := n.NeuronDevices[0]
		f.Accelerator = &catalog.Accelerator{Name: strings.ToLower(aws.ToString(d.Name)), Manufacturer: "aws", Count: int64(aws.ToInt32(d.Count)),
			MemoryMiB: int64(aws.ToInt32(n.TotalNeuronDeviceMemoryInMiB))}
		if c := d.CoreInfo; c != nil {
			f.Accelerator.CoresPerDevice, f.Accelerator.CoreVersion = int64(aws.ToInt32(c.Count)), int64(aws.ToInt32(c.Version))
		}
		if f.Accelerator.MemoryMiB == 0 && d.MemoryInfo != nil {
			f.Accelerator.MemoryMiB = int64(aws.ToInt32(d.MemoryInfo.SizeInMiB)) * f.Accelerator.Count
		}
	}
	if e := info.EbsInfo; e != nil && e.EbsOptimizedInfo != nil {
		f.EBSBandwidthMbps = int64(aws.ToInt32(e.EbsOptimizedInfo.MaximumBandwidthInMbps))
	}
	if s := info.InstanceStorageInfo; s != nil {
		f.LocalNVMeGiB = aws.ToInt64(s.TotalSizeInGB)
	}
	return f
}

var bandwidth = regexp.MustCompile(`([\d.]+)\s*(Gigabit|Megabit)`)

// bandwidthMbps reads "25 Gigabit", "Up to 10 Gigabit" or "750 Megabit".
func bandwidthMbps(s string) int64 {
	m := bandwidth.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	if m[2] == "Gigabit" {
		v *= 1000
	}
	return int64(v)
}
