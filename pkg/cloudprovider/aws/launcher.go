package aws

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/bootstrap"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// MaxOverrides caps the instance type × subnet pairs of one CreateFleet call.
const MaxOverrides = 60

// Tag keys Backstop puts on what it launches; GC finds its instances by them.
const (
	TagNodePool  = v1.NodePoolLabelKey
	TagNodeClaim = v1.NodeClaimLabelKey
	TagNodeClass = awsv1.Group + "/ec2nodeclass"
	TagEKSName   = "eks:eks-cluster-name"
)

// ClusterTag is the tag key marking the cluster's instances.
func ClusterTag(cluster string) string { return "kubernetes.io/cluster/" + cluster }

// Launcher launches one instance per NodeClaim with an instant CreateFleet of
// a single capacity type: Spot (price-capacity-optimized) when the claim allows
// it and Spot is available, else On-Demand (lowest-price).
type Launcher struct {
	ec2         *ec2.Client
	cluster     string
	offerings   *Offerings
	unavailable *UnavailableOfferings
	// process names this controller process; NodeClaims it created carry it.
	process string

	mu        sync.Mutex
	templates map[string]bool
	// ensuring makes one Describe (and Create) per template however many
	// NodeClaims need it at once.
	ensuring singleflight.Group
	// uncertain are NodeClaims whose last CreateFleet got no clear answer (a
	// 5xx, a dropped connection): it may have launched.
	uncertain map[k8stypes.UID]bool
	// refused counts, per NodeClaim, the CreateFleets EC2 answered with no
	// instance: a retry after a definite "no" needs a client token of its
	// own, as EC2 answers a token it has seen with its first answer. Lost
	// after a restart, it costs at most a retry per earlier refusal (EC2
	// answers those tokens with their refusals); an instance launched under
	// one is found by alreadyLaunched first.
	refused map[k8stypes.UID]int
	// propagating are instance profiles EC2 refused as not yet visible,
	// with when to ask again: the class's other NodeClaims wait too,
	// rather than each spending a CreateFleet on the same refusal.
	propagating map[string]time.Time
	// inherited are the instances earlier processes launched, by NodeClaim,
	// as listed once when the first of their NodeClaims was launched here.
	inheritMu sync.Mutex
	inherited map[string]*cloudprovider.Instance
	// offeringFailures counts, per offering, what EC2 refused; nil counts nothing.
	offeringFailures *prometheus.CounterVec
	// facts are the cluster's endpoint, CA and Service CIDR that bootstrap
	// user data carries; without them nothing that must join is launched.
	facts *ClusterFacts
}

// JoinsWith gives the launcher the cluster facts its nodes' user data needs.
func (l *Launcher) JoinsWith(facts *ClusterFacts) *Launcher {
	l.facts = facts
	return l
}

// CountFailures makes the launcher count each offering EC2 refuses in
// backstop_offering_launch_failures_total, registered with reg.
func (l *Launcher) CountFailures(reg prometheus.Registerer) *Launcher {
	l.offeringFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "backstop_offering_launch_failures_total",
		Help: "Offerings EC2 refused in a CreateFleet, by NodePool, instance type, capacity type, zone, zone id and EC2 error code.",
	}, []string{"nodepool", "instance_type", "capacity_type", "zone", "zone_id", "reason"})
	reg.MustRegister(l.offeringFailures)
	return l
}

// countFailures counts the errors that name an offering; the zone id comes
// from the NodeClass's subnets (zone names differ between accounts, ids do not).
func (l *Launcher) countFailures(claim *v1.NodeClaim, class *awsv1.EC2NodeClass, capacityType string, errs []FleetError) {
	if l.offeringFailures == nil {
		return
	}
	for _, e := range errs {
		if e.InstanceType == "" {
			continue
		}
		zoneID := ""
		for _, s := range class.Status.Subnets {
			if s.Zone == e.Zone || (e.Subnet != "" && s.ID == e.Subnet) {
				zoneID = s.ZoneID
				if e.Zone == "" {
					e.Zone = s.Zone
				}
				break
			}
		}
		l.offeringFailures.WithLabelValues(claim.Labels[v1.NodePoolLabelKey], e.InstanceType, capacityType, e.Zone, zoneID, e.Code).Inc()
	}
}

// NewLauncher returns a launcher for the cluster; process is the id this
// controller process writes on the NodeClaims it creates
// (cloudprovider.CreatedByAnnotation).
func NewLauncher(client *ec2.Client, cluster string, offerings *Offerings, unavailable *UnavailableOfferings, process string) *Launcher {
	return &Launcher{ec2: client, cluster: cluster, offerings: offerings, unavailable: unavailable, process: process,
		templates: map[string]bool{}, uncertain: map[k8stypes.UID]bool{}, refused: map[k8stypes.UID]int{},
		propagating: map[string]time.Time{}}
}

// clock is the launcher's clock, its unavailability marks'.
func (l *Launcher) clock() clock.Clock {
	if l.unavailable != nil {
		return l.unavailable.clock
	}
	return clock.RealClock{}
}

// stillPropagating refuses a launch from a class whose instance profile
// EC2 refused as not yet visible, until the time to ask again, as EC2
// would: without a CreateFleet.
func (l *Launcher) stillPropagating(class *awsv1.EC2NodeClass) error {
	l.mu.Lock()
	until, ok := l.propagating[class.Status.InstanceProfile]
	l.mu.Unlock()
	now := l.clock().Now()
	if !ok || !now.Before(until) {
		return nil
	}
	return &cloudprovider.RetryableError{Cause: cloudprovider.Cause{Code: InstanceProfileNotPropagated, Err: errors.New(notPropagatedMessage)},
		Operation: "CreateFleet", RetryAfter: until.Sub(now)}
}

// fleetOverride is one instance type in one subnet.
type fleetOverride struct {
	it     *scheduling.InstanceType
	zone   string
	subnet string
	price  float64
	arch   string
	// ami is the class's image this type boots (its launch template's).
	ami          string
	capacityType string
	// reservation is the capacity reservation of a reserved override.
	reservation string
	// template is the launch template it launches from, by name.
	template string
}

// alreadyLaunched returns the instance an earlier launch of the claim made,
// if one may exist: when this process's last CreateFleet for it got no clear
// answer, EC2 is asked by the claim's tag; when another process (a controller
// since crashed or replaced, an earlier leader) created the claim, the answer
// comes from one listing of the cluster's instances, taken the first time
// such a claim is launched, so a restart asks EC2 once, not once per claim.
func (l *Launcher) alreadyLaunched(ctx context.Context, claim *v1.NodeClaim) (*cloudprovider.Instance, error) {
	l.mu.Lock()
	uncertain := l.uncertain[claim.UID]
	foreign := claim.Annotations[cloudprovider.CreatedByAnnotation] != l.process
	l.mu.Unlock()
	if uncertain {
		found, err := l.launchedFor(ctx, claim.Name)
		if err != nil || len(found) == 0 {
			return nil, err
		}
		return found[0], nil
	}
	if !foreign {
		return nil, nil
	}
	// One listing for all: the launch workers that get here together wait for it.
	l.inheritMu.Lock()
	defer l.inheritMu.Unlock()
	if l.inherited == nil {
		all, err := l.List(ctx)
		if err != nil {
			return nil, err
		}
		l.inherited = map[string]*cloudprovider.Instance{}
		for _, inst := range all {
			l.inherited[inst.Labels[TagNodeClaim]] = inst
		}
	}
	return l.inherited[claim.Name], nil
}

func (l *Launcher) setUncertain(claim *v1.NodeClaim, uncertain bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if uncertain {
		l.uncertain[claim.UID] = true
	} else {
		delete(l.uncertain, claim.UID)
	}
}

// Launch creates the instance for a NodeClaim from its EC2NodeClass. When an
// earlier launch may have succeeded, EC2 is asked first (by the NodeClaim's
// tag), before any unavailability mark is looked at, so a lost answer never
// leads to a second instance or a NodeClaim given up while its instance runs.
// Errors are typed (cloudprovider.InsufficientCapacityError,
// ConfigurationError, RetryableError); capacity errors have already marked
// what ran out.
func (l *Launcher) Launch(ctx context.Context, claim *v1.NodeClaim, class *awsv1.EC2NodeClass) (*cloudprovider.Instance, error) {
	reqs, err := scheduling.FromAPI(claim.Spec.Requirements)
	if err != nil {
		return nil, &cloudprovider.ConfigurationError{Cause: cloudprovider.Cause{Code: "InvalidRequirements", Err: err}, Message: err.Error()}
	}
	found, err := l.alreadyLaunched(ctx, claim)
	if err != nil {
		return nil, err
	}
	if found != nil {
		l.setUncertain(claim, false)
		return l.describe(ctx, class, found), nil
	}
	if err := l.stillPropagating(class); err != nil {
		return nil, err
	}
	types, err := l.offerings.InstanceTypes(ctx, class)
	if err != nil {
		return nil, err
	}
	capacityType, overrides := l.choose(reqs, types, class)
	if len(overrides) == 0 {
		return nil, &cloudprovider.InsufficientCapacityError{Cause: cloudprovider.Cause{Code: "NoAvailableOffering"},
			Message: "every instance type, zone and capacity type the NodeClaim allows is marked unavailable or not offered"}
	}
	configs, err := l.launchTemplateConfigs(ctx, claim, class, overrides)
	if err != nil {
		return nil, err
	}
	sent := l.clock().Now()
	out, err := l.createFleet(ctx, claim, class, capacityType, configs)
	if err != nil {
		if fe, ok := FromAPIError(err); ok && strings.HasPrefix(fe.Code, "InvalidLaunchTemplate") {
			// Someone deleted our launch template: make it again, once.
			l.forgetTemplates()
			if configs, err = l.launchTemplateConfigs(ctx, claim, class, overrides); err != nil {
				return nil, err
			}
			out, err = l.createFleet(ctx, claim, class, capacityType, configs)
		}
	}
	if err != nil {
		fe, ok := FromAPIError(err)
		// No answer, or a server error: the fleet may have launched.
		l.setUncertain(claim, !ok || isServerError(err))
		if !ok {
			return nil, retryable("CreateFleet", err)
		}
		l.exhaust(overrides, []FleetError{fe})
		return nil, l.failure("CreateFleet", capacityType, placementGroupOf(class), []FleetError{fe}, causeOf(err))
	}
	l.setUncertain(claim, false)
	var fleetErrs []FleetError
	for _, e := range out.Errors {
		fe := FleetError{Code: aws.ToString(e.ErrorCode), Message: aws.ToString(e.ErrorMessage)}
		if lto := e.LaunchTemplateAndOverrides; lto != nil && lto.Overrides != nil {
			fe.InstanceType = string(lto.Overrides.InstanceType)
			fe.Zone = aws.ToString(lto.Overrides.AvailabilityZone)
			fe.Subnet = aws.ToString(lto.Overrides.SubnetId)
			if spec := lto.LaunchTemplateSpecification; spec != nil {
				fe.Template = aws.ToString(spec.LaunchTemplateName)
			}
		}
		fleetErrs = append(fleetErrs, fe)
	}
	l.countFailures(claim, class, capacityType, fleetErrs)
	l.exhaust(overrides, fleetErrs)
	requestID, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	if len(out.Instances) == 0 || len(out.Instances[0].InstanceIds) == 0 {
		err := l.failure("CreateFleet", capacityType, placementGroupOf(class), fleetErrs, cloudprovider.Cause{RequestID: requestID})
		l.mu.Lock()
		var retry *cloudprovider.RetryableError
		if errors.As(err, &retry) && retry.Code == InstanceProfileNotPropagated {
			l.propagating[class.Status.InstanceProfile] = l.clock().Now().Add(retry.RetryAfter)
		}
		if cloudprovider.IsInsufficientCapacity(err) {
			// The NodeClaim is given up; nothing launches under it again.
			delete(l.refused, claim.UID)
		} else {
			l.refused[claim.UID]++
		}
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Lock()
	delete(l.refused, claim.UID)
	delete(l.propagating, class.Status.InstanceProfile)
	l.mu.Unlock()
	if len(fleetErrs) > 0 {
		// Partial success: what failed is still worth remembering.
		if c := ClassifyPlaced(capacityType, fleetErrs, placementGroupOf(class)); c.Outcome == OutcomeUnavailable {
			l.unavailable.Mark(c.Unavailable...)
		}
	}
	inst := out.Instances[0]
	zone := aws.ToString(inst.LaunchTemplateAndOverrides.Overrides.AvailabilityZone)
	template := ""
	if spec := inst.LaunchTemplateAndOverrides.LaunchTemplateSpecification; spec != nil {
		template = aws.ToString(spec.LaunchTemplateName)
	}
	launched := l.result(types, inst.InstanceIds[0], string(inst.InstanceType), zone, capacityType)
	l.partition(ctx, class, launched)
	// CreateFleet does not say which image or reservation; they are those
	// of the launch template the type was given (status.imageID, AMI drift).
	for _, o := range overrides {
		if o.it.Name == launched.InstanceType && (template == "" || o.template == template) && (o.reservation == "" || o.zone == zone) {
			launched.ImageID = o.ami
			if o.reservation != "" {
				reservedLabels(launched, o.reservation)
				l.offerings.reservations.Launched(o.reservation, sent)
			}
			break
		}
	}
	return launched, nil
}

// requestedPartition is the one partition of a partition group the
// NodeClaim's requirements allow; 0 when they allow several (EC2 picks).
func requestedPartition(claim *v1.NodeClaim, pg *awsv1.PlacementGroup) int {
	if pg.Strategy != awsv1.PlacementStrategyPartition {
		return 0
	}
	reqs, err := scheduling.FromAPI(claim.Spec.Requirements)
	if err != nil {
		return 0
	}
	r, ok := reqs[LabelPlacementGroupPartition]
	if !ok {
		return 0
	}
	var allowed []int
	for p := 1; p <= int(pg.PartitionCount); p++ {
		if r.Has(strconv.Itoa(p)) {
			allowed = append(allowed, p)
		}
	}
	if len(allowed) == 1 {
		return allowed[0]
	}
	return 0
}

// placementGroupOf is the id of the class's placement group, "" for none.
func placementGroupOf(class *awsv1.EC2NodeClass) string {
	if class != nil && class.Status.PlacementGroup != nil {
		return class.Status.PlacementGroup.ID
	}
	return ""
}

// partition labels an instance of a partition group with the partition EC2
// put it in, which CreateFleet does not say: DescribeInstances does. When
// that fails, the node goes without the label (and a log line says so)
// rather than the launch failing over it.
func (l *Launcher) partition(ctx context.Context, class *awsv1.EC2NodeClass, inst *cloudprovider.Instance) {
	if pg := class.Status.PlacementGroup; pg == nil || pg.Strategy != awsv1.PlacementStrategyPartition {
		return
	}
	found, err := l.Get(ctx, inst.ProviderID)
	if err == nil && found.Labels[LabelPlacementGroupPartition] != "" {
		if inst.Labels == nil {
			// result leaves them nil for a type its list lacks.
			inst.Labels = map[string]string{}
		}
		inst.Labels[LabelPlacementGroupPartition] = found.Labels[LabelPlacementGroupPartition]
		return
	}
	log.FromContext(ctx).Info("partition of a placement-group instance unknown; its node goes without the label",
		"instance", inst.ID, "placement-group", class.Status.PlacementGroup.ID, "error", err)
}

// reservedLabels marks an instance as launched into a capacity reservation.
func reservedLabels(inst *cloudprovider.Instance, reservation string) {
	if inst.Labels == nil {
		inst.Labels = map[string]string{}
	}
	inst.CapacityType = v1.CapacityTypeReserved
	inst.Labels[LabelCapacityReservationID] = reservation
	inst.Labels[LabelCapacityReservationType] = awsv1.CapacityReservationTypeDefault
	inst.Labels[LabelCapacityReservationInterruptible] = "false"
}

// exhaust records, for the reserved overrides EC2 refused for want of
// capacity, that their reservations have no room: the next plan leaves them.
func (l *Launcher) exhaust(overrides []fleetOverride, errs []FleetError) {
	for _, e := range errs {
		if !capacityCodes[e.Code] {
			continue
		}
		for _, o := range overrides {
			if o.reservation == "" {
				continue
			}
			// A request-wide refusal names no override: it is about all.
			whole := e.InstanceType == "" && e.Template == ""
			if whole || (o.it.Name == e.InstanceType && (e.Template == "" || e.Template == o.template) && (e.Zone == "" || e.Zone == o.zone)) {
				l.offerings.reservations.Exhausted(o.reservation)
			}
		}
	}
}

// result describes a launched instance with the capacity and labels of its type.
func (l *Launcher) result(types []*scheduling.InstanceType, id, instanceType, zone, capacityType string) *cloudprovider.Instance {
	out := &cloudprovider.Instance{ID: id, ProviderID: fmt.Sprintf("aws:///%s/%s", zone, id), InstanceType: instanceType, Zone: zone, CapacityType: capacityType}
	for _, it := range types {
		if it.Name == instanceType {
			out.Capacity, out.Allocatable = it.Capacity.List(), it.Allocatable().List()
			out.Labels = it.Requirements.Labels()
			for _, o := range it.Offerings {
				if o.Zone == zone && o.ZoneID != "" {
					out.Labels[LabelTopologyZoneID] = o.ZoneID
					break
				}
			}
		}
	}
	return out
}

// describe completes an instance found in EC2 with its type's capacity and labels.
func (l *Launcher) describe(ctx context.Context, class *awsv1.EC2NodeClass, found *cloudprovider.Instance) *cloudprovider.Instance {
	// Without instance types (EC2 not answering), the instance is still
	// returned: adopting it matters more than its capacity figures.
	types, _ := l.offerings.InstanceTypes(ctx, class)
	out := l.result(types, found.ID, found.InstanceType, found.Zone, found.CapacityType)
	out.ImageID, out.LaunchTime, out.State = found.ImageID, found.LaunchTime, found.State
	if found.CapacityType == v1.CapacityTypeReserved {
		reservedLabels(out, found.Labels[LabelCapacityReservationID])
	}
	if p := found.Labels[LabelPlacementGroupPartition]; p != "" && out.Labels != nil {
		out.Labels[LabelPlacementGroupPartition] = p
	}
	return out
}

// isServerError reports an HTTP 5xx answer.
func isServerError(err error) bool {
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() >= 500
}

// failure classifies a launch that produced no instance.
func (l *Launcher) failure(operation, capacityType, placementGroup string, errs []FleetError, cause cloudprovider.Cause) error {
	c := ClassifyPlaced(capacityType, errs, placementGroup)
	cause.Code = c.Reason
	if cause.Err == nil {
		cause.Err = errors.New(c.Message)
	}
	switch c.Outcome {
	case OutcomeUnavailable:
		l.unavailable.Mark(c.Unavailable...)
		out := &cloudprovider.InsufficientCapacityError{Cause: cause, Message: c.Message}
		for _, u := range c.Unavailable {
			if u.Scope == ScopeCapacityType {
				out.ClosedCapacityType = u.CapacityType
			}
		}
		return out
	case OutcomeRetry:
		out := &cloudprovider.RetryableError{Cause: cause, Operation: operation}
		if c.Reason == InstanceProfileNotPropagated {
			out.RetryAfter = 3 * time.Second
		}
		return out
	default:
		return &cloudprovider.ConfigurationError{Cause: cause, Message: c.Message}
	}
}

// choose picks the capacity type and the overrides, cheapest first: Spot when
// the claim allows it and some Spot offering is available. Of what the claim
// allows, the fleet is not offered what a user would not want to pay for:
//   - accelerated types (GPUs, Neuron devices) and bare metal, while a plain
//     type can launch: a fleet free to choose by capacity could otherwise
//     put ordinary pods on a GPU instance. Pods that need the devices fit
//     accelerated types only, so for them nothing is dropped.
//   - Spot offerings dearer than the cheapest On-Demand one the claim
//     allows: price-capacity-optimized may pick a pricier pool with more
//     capacity, and a Spot node that costs more than On-Demand is no saving.
//
// Neither applies when the claim has minValues, whose spread they could cut.
func (l *Launcher) choose(reqs scheduling.Requirements, types []*scheduling.InstanceType, class *awsv1.EC2NodeClass) (string, []fleetOverride) {
	subnets := map[string]string{}
	for _, s := range class.Status.Subnets {
		if _, ok := subnets[s.Zone]; !ok && !l.unavailable.SubnetUnavailable(s.ID) {
			subnets[s.Zone] = s.ID
		}
	}
	images := Images(class)
	allowed := func(ct string) bool {
		r, ok := reqs[v1.CapacityTypeLabelKey]
		return !ok || r.Has(ct)
	}
	var all []fleetOverride
	for _, it := range types {
		if r, ok := reqs[corev1.LabelInstanceTypeStable]; ok && !r.Has(it.Name) {
			continue
		}
		ami := images.For(it)
		if !compatible(reqs, it) || ami == "" {
			continue
		}
		arch := ""
		if r, ok := it.Requirements[corev1.LabelArchStable]; ok {
			arch = r.Any()
		}
		for _, o := range it.Offerings {
			if !o.Available || !allowed(o.CapacityType) {
				continue
			}
			if r, ok := reqs[corev1.LabelTopologyZone]; ok && !r.Has(o.Zone) {
				continue
			}
			if r, ok := reqs[LabelTopologyZoneID]; ok && !r.Matches(o.ZoneID, o.ZoneID != "") {
				continue
			}
			if r, ok := reqs[LabelCapacityReservationID]; ok && o.ReservationID != "" && !r.Has(o.ReservationID) {
				continue
			}
			subnet, ok := subnets[o.Zone]
			if !ok {
				continue
			}
			all = append(all, fleetOverride{it: it, zone: o.Zone, subnet: subnet, price: o.Price, arch: arch, ami: ami, capacityType: o.CapacityType, reservation: o.ReservationID})
		}
	}
	if !reqs.HasMinValues() {
		if slices.ContainsFunc(all, func(o fleetOverride) bool { return !exotic(o.it) }) {
			all = slices.DeleteFunc(all, func(o fleetOverride) bool { return exotic(o.it) })
		}
		cheapestOnDemand := math.Inf(1)
		for _, o := range all {
			if o.capacityType == v1.CapacityTypeOnDemand {
				cheapestOnDemand = min(cheapestOnDemand, o.price)
			}
		}
		all = slices.DeleteFunc(all, func(o fleetOverride) bool {
			return o.capacityType == v1.CapacityTypeSpot && o.price > cheapestOnDemand
		})
	}
	// Reservations first (paid for whether used or not), then Spot, then On-Demand.
	for _, ct := range []string{v1.CapacityTypeReserved, v1.CapacityTypeSpot, v1.CapacityTypeOnDemand} {
		var out []fleetOverride
		for _, o := range all {
			if o.capacityType == ct {
				out = append(out, o)
			}
		}
		if len(out) == 0 {
			continue
		}
		sort.SliceStable(out, func(i, j int) bool {
			if out[i].price != out[j].price {
				return out[i].price < out[j].price
			}
			return out[i].it.Name+out[i].zone+out[i].reservation < out[j].it.Name+out[j].zone+out[j].reservation
		})
		if len(out) > MaxOverrides {
			out = out[:MaxOverrides]
		}
		return ct, out
	}
	return "", nil
}

// exotic is a type a plain pod should not land on when another would do:
// one with GPUs or Neuron devices, or bare metal.
func exotic(it *scheduling.InstanceType) bool {
	if _, ok := it.Requirements[LabelInstanceGPUCount]; ok {
		return true
	}
	if _, ok := it.Requirements[LabelInstanceAcceleratorCount]; ok {
		return true
	}
	r, ok := it.Requirements[LabelInstanceSize]
	return ok && strings.Contains(r.Any(), "metal")
}

// compatible checks the claim's requirements on the labels an instance type defines.
func compatible(reqs scheduling.Requirements, it *scheduling.InstanceType) bool {
	for k, r := range it.Requirements {
		if cr, ok := reqs[k]; ok && !cr.Intersects(r) {
			return false
		}
	}
	return true
}

// launchTemplateConfigs makes sure a launch template exists for each image the
// overrides need and groups the overrides under them.
func (l *Launcher) launchTemplateConfigs(ctx context.Context, claim *v1.NodeClaim, class *awsv1.EC2NodeClass, overrides []fleetOverride) ([]ec2types.FleetLaunchTemplateConfigRequest, error) {
	// One launch template per image: each type launches the image it can
	// boot (its architecture; the NVIDIA or Neuron variant for GPU and
	// accelerator types); and per capacity reservation, which a template
	// targets. Each override learns its template's name.
	type templateKey struct{ ami, reservation string }
	byTemplate := map[templateKey][]int{}
	var keys []templateKey
	for i, o := range overrides {
		k := templateKey{o.ami, o.reservation}
		if _, ok := byTemplate[k]; !ok {
			keys = append(keys, k)
		}
		byTemplate[k] = append(byTemplate[k], i)
	}
	var configs []ec2types.FleetLaunchTemplateConfigRequest
	for _, k := range keys {
		name, err := l.ensureTemplate(ctx, claim, class, k.ami, k.reservation)
		if err != nil {
			return nil, err
		}
		cfg := ec2types.FleetLaunchTemplateConfigRequest{LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{
			LaunchTemplateName: aws.String(name), Version: aws.String("$Latest"),
		}}
		for _, i := range byTemplate[k] {
			overrides[i].template = name
			o := overrides[i]
			cfg.Overrides = append(cfg.Overrides, ec2types.FleetLaunchTemplateOverridesRequest{
				InstanceType: ec2types.InstanceType(o.it.Name), SubnetId: aws.String(o.subnet), AvailabilityZone: aws.String(o.zone),
			})
		}
		configs = append(configs, cfg)
	}
	if len(configs) == 0 {
		return nil, &cloudprovider.ConfigurationError{Cause: cloudprovider.Cause{Code: "AMIsNotFound"}, Message: fmt.Sprintf("ec2nodeclass %s has no image the NodeClaim's instance types can boot (their architectures, GPUs or accelerators); check spec.amiSelectorTerms and status.amis", class.Name)}
	}
	return configs, nil
}

// ClassImages are a class's images with their requirements parsed.
type ClassImages []classImage

type classImage struct {
	id   string
	reqs scheduling.Requirements
}

// Images parses the requirements of the class's resolved images.
func Images(class *awsv1.EC2NodeClass) ClassImages {
	out := make(ClassImages, 0, len(class.Status.AMIs))
	for _, ami := range class.Status.AMIs {
		var reqs []corev1.NodeSelectorRequirement
		for _, r := range ami.Requirements {
			reqs = append(reqs, corev1.NodeSelectorRequirement{Key: r.Key, Operator: corev1.NodeSelectorOperator(r.Operator), Values: r.Values})
		}
		if rs, err := scheduling.FromNodeSelector(reqs); err == nil {
			out = append(out, classImage{id: ami.ID, reqs: rs})
		}
	}
	return out
}

// For is the first image whose requirements the instance type's labels
// meet (its architecture; GPUs or accelerators for the accelerated
// variants); "" when none does.
func (images ClassImages) For(it *scheduling.InstanceType) string {
	if it == nil {
		return ""
	}
	for _, img := range images {
		ok := true
		for k, want := range img.reqs {
			have, present := it.Requirements[k]
			v := ""
			if present {
				v = have.Any()
			}
			if !want.Matches(v, present) {
				ok = false
				break
			}
		}
		if ok {
			return img.id
		}
	}
	return ""
}

// Family is the EC2NodeClass's AMI family, lower case: its alias's, else amiFamily.
func Family(class *awsv1.EC2NodeClass) string {
	for _, t := range class.Spec.AMISelectorTerms {
		if family, _, ok := strings.Cut(t.Alias, "@"); ok {
			return strings.ToLower(family)
		}
	}
	return strings.ToLower(aws.ToString(class.Spec.AMIFamily))
}

// userData is what the claim's instance boots from: its family's bootstrap
// (bootstrap.For), the user's data kept; Custom gets spec.userData as it is.
func (l *Launcher) userData(ctx context.Context, claim *v1.NodeClaim, class *awsv1.EC2NodeClass) (string, error) {
	family := Family(class)
	switch family {
	case "al2023", "al2", "bottlerocket", "windows2019", "windows2022", "windows2025":
	default:
		return aws.ToString(class.Spec.UserData), nil
	}
	if l.facts == nil {
		return "", &cloudprovider.ConfigurationError{Cause: cloudprovider.Cause{Code: "ClusterFactsMissing"},
			Message: "the launcher has no cluster facts (endpoint, CA, Service CIDR), so a node could not join; nothing is launched"}
	}
	cluster, err := l.facts.Get(ctx)
	if err != nil {
		return "", err
	}
	taints := append([]corev1.Taint{v1.UnregisteredNoExecuteTaint}, claim.Spec.Taints...)
	taints = append(taints, claim.Spec.StartupTaints...)
	labels := map[string]string{}
	for k, v := range claim.Labels {
		if KubeletMaySet(k) {
			labels[k] = v
		}
	}
	out, err := bootstrap.For(family, bootstrap.Node{Cluster: cluster, Kubelet: class.Spec.Kubelet, Labels: labels, Taints: taints,
		InstanceStorePolicy: class.Spec.InstanceStorePolicy, UserData: class.Spec.UserData})
	if err != nil {
		return "", &cloudprovider.ConfigurationError{Cause: cloudprovider.Cause{Code: "InvalidUserData", Err: err},
			Message: fmt.Sprintf("ec2nodeclass %s: %v", class.Name, err)}
	}
	return out, nil
}

// DefaultBlockDevices are the volumes a family's nodes get when the
// EC2NodeClass names none, as Karpenter users expect: an encrypted gp3 root
// of the family's usual size (20 GiB for AL2023 and AL2, 50 GiB for
// Windows), and for Bottlerocket its 4 GiB OS volume and 20 GiB data volume.
// Custom images keep their own.
func DefaultBlockDevices(family string) []awsv1.BlockDeviceMapping {
	volume := func(device, size string, root bool) awsv1.BlockDeviceMapping {
		return awsv1.BlockDeviceMapping{DeviceName: aws.String(device), RootVolume: root, EBS: &awsv1.BlockDevice{
			VolumeSize: aws.String(size), VolumeType: aws.String("gp3"), Encrypted: aws.Bool(true), DeleteOnTermination: aws.Bool(true)}}
	}
	switch {
	case family == "al2023" || family == "al2":
		return []awsv1.BlockDeviceMapping{volume("/dev/xvda", "20Gi", true)}
	case family == "bottlerocket":
		return []awsv1.BlockDeviceMapping{volume("/dev/xvda", "4Gi", false), volume("/dev/xvdb", "20Gi", true)}
	case strings.HasPrefix(family, "windows"):
		return []awsv1.BlockDeviceMapping{volume("/dev/sda1", "50Gi", true)}
	}
	return nil
}

// KubeletMaySet reports whether a kubelet may register its Node with the
// label: the NodeRestriction admission plugin refuses labels in the
// kubernetes.io and k8s.io domains but for the kubelet's own and a few
// well-known ones.
func KubeletMaySet(key string) bool {
	domain, _, ok := strings.Cut(key, "/")
	if !ok {
		return true
	}
	if !(domain == "kubernetes.io" || domain == "k8s.io" || strings.HasSuffix(domain, ".kubernetes.io") || strings.HasSuffix(domain, ".k8s.io")) {
		return true
	}
	if domain == "kubelet.kubernetes.io" || domain == "node.kubernetes.io" || strings.HasSuffix(domain, ".kubelet.kubernetes.io") || strings.HasSuffix(domain, ".node.kubernetes.io") {
		return true
	}
	switch key {
	case corev1.LabelHostname, corev1.LabelInstanceTypeStable, corev1.LabelInstanceType, corev1.LabelOSStable, corev1.LabelArchStable,
		corev1.LabelTopologyZone, corev1.LabelTopologyRegion, corev1.LabelFailureDomainBetaZone, corev1.LabelFailureDomainBetaRegion:
		return true
	}
	return false
}

// templateData is what a launch template holds; its hash names the template,
// so a change makes a new one and identical classes share one.
type templateData struct {
	Image           string
	SecurityGroups  []string
	InstanceProfile string
	UserData        string
	Metadata        *awsv1.MetadataOptions
	BlockDevices    []awsv1.BlockDeviceMapping
	Monitoring      bool
	PublicIP        *bool
	// The primary interface's prefixes and connection tracking, and the CPU
	// options; empty ones leave the name of existing templates as it was.
	IPPrefixCount        *int32                    `json:",omitempty"`
	ConnectionTracking   *awsv1.ConnectionTracking `json:",omitempty"`
	NestedVirtualization *string                   `json:",omitempty"`
	// CapacityReservation is the reservation a reserved launch targets.
	CapacityReservation string `json:",omitempty"`
	// OutsideReservations keeps the On-Demand instances of a class that
	// selects reservations out of open ones EC2 would put them in: the
	// reservations' room is counted for reserved launches alone, and a
	// node's capacity type is what it was launched as.
	OutsideReservations bool `json:",omitempty"`
	// PlacementGroup is the id of the placement group every instance of
	// the class launches into, and Partition the partition of a partition
	// group the NodeClaim asks for (0: EC2 picks).
	PlacementGroup string `json:",omitempty"`
	Partition      int    `json:",omitempty"`
	// Tags are those of the template, of the network interfaces and Spot
	// requests its launches create: the class's own, and the ones the
	// controller's IAM policy demands (cluster, NodePool, class).
	Tags map[string]string
}

// ownedTags are the tags of everything launched for a NodePool and class:
// the class's own tags, then the ones the controller's IAM policy (ours and
// Karpenter's) demands on every create request.
func (l *Launcher) ownedTags(nodePool string, class *awsv1.EC2NodeClass) map[string]string {
	tags := map[string]string{}
	for k, v := range class.Spec.Tags {
		tags[k] = v
	}
	tags[ClusterTag(l.cluster)] = "owned"
	tags[TagEKSName] = l.cluster
	tags[TagNodePool] = nodePool
	tags[TagNodeClass] = class.Name
	return tags
}

func (l *Launcher) ensureTemplate(ctx context.Context, claim *v1.NodeClaim, class *awsv1.EC2NodeClass, ami, reservation string) (string, error) {
	if class.Status.InstanceProfile == "" {
		// An instance without a profile has no credentials: it would run,
		// and be paid for, without ever joining.
		return "", &cloudprovider.ConfigurationError{Cause: cloudprovider.Cause{Code: "InstanceProfileNotReady"},
			Message: fmt.Sprintf("ec2nodeclass %s has no instance profile yet (status.instanceProfile is empty); its InstanceProfileReady condition says why; nothing is launched", class.Name)}
	}
	devices := class.Spec.BlockDeviceMappings
	if len(devices) == 0 {
		devices = DefaultBlockDevices(Family(class))
	}
	data := templateData{Image: ami, InstanceProfile: class.Status.InstanceProfile, Metadata: class.Spec.MetadataOptions,
		BlockDevices: devices, PublicIP: class.Spec.AssociatePublicIPAddress, Tags: l.ownedTags(claim.Labels[v1.NodePoolLabelKey], class),
		IPPrefixCount: class.Spec.IPPrefixCount, ConnectionTracking: class.Spec.ConnectionTracking, CapacityReservation: reservation,
		OutsideReservations: reservation == "" && len(class.Spec.CapacityReservationSelectorTerms) > 0}
	if pg := class.Status.PlacementGroup; pg != nil {
		data.PlacementGroup = pg.ID
		data.Partition = requestedPartition(claim, pg)
	} else if class.Spec.PlacementGroupSelector != nil {
		// Launching outside the group the class asks for would give the
		// user what they did not ask for.
		return "", &cloudprovider.ConfigurationError{Cause: cloudprovider.Cause{Code: "PlacementGroupNotReady"},
			Message: fmt.Sprintf("ec2nodeclass %s names a placement group that is not resolved (status.placementGroup is empty); its PlacementGroupReady condition says why; nothing is launched", class.Name)}
	}
	if o := class.Spec.CPUOptions; o != nil {
		data.NestedVirtualization = o.NestedVirtualization
	}
	for _, sg := range class.Status.SecurityGroups {
		data.SecurityGroups = append(data.SecurityGroups, sg.ID)
	}
	userData, err := l.userData(ctx, claim, class)
	if err != nil {
		return "", err
	}
	data.UserData = userData
	if class.Spec.DetailedMonitoring != nil {
		data.Monitoring = *class.Spec.DetailedMonitoring
	}
	raw, _ := json.Marshal(data)
	sum := sha256.Sum256(raw)
	name := fmt.Sprintf("backstop/%s/%s", l.cluster, hex.EncodeToString(sum[:8]))

	l.mu.Lock()
	known := l.templates[name]
	l.mu.Unlock()
	if known {
		return name, nil
	}
	_, err, _ = l.ensuring.Do(name, func() (any, error) {
		if err := l.describeOrCreateTemplate(ctx, name, class, data); err != nil {
			return nil, err
		}
		l.mu.Lock()
		l.templates[name] = true
		l.mu.Unlock()
		return nil, nil
	})
	if err != nil {
		return "", err
	}
	return name, nil
}

// describeOrCreateTemplate creates the template unless EC2 has it.
func (l *Launcher) describeOrCreateTemplate(ctx context.Context, name string, class *awsv1.EC2NodeClass, data templateData) error {
	_, err := l.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{name}})
	if err == nil {
		return nil
	}
	fe, ok := FromAPIError(err)
	if !ok {
		return retryable("DescribeLaunchTemplates", err)
	}
	if fe.Code != "InvalidLaunchTemplateName.NotFoundException" {
		return l.failure("DescribeLaunchTemplates", "", "", []FleetError{fe}, causeOf(err))
	}
	return l.createTemplate(ctx, name, class, data)
}

func (l *Launcher) createTemplate(ctx context.Context, name string, class *awsv1.EC2NodeClass, d templateData) error {
	lt := &ec2types.RequestLaunchTemplateData{
		ImageId:          aws.String(d.Image),
		SecurityGroupIds: d.SecurityGroups,
		Monitoring:       &ec2types.LaunchTemplatesMonitoringRequest{Enabled: aws.Bool(d.Monitoring)},
		// Instances and volumes are tagged by CreateFleet, per NodeClaim;
		// what else a launch creates is tagged here.
		TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{
			{ResourceType: ec2types.ResourceTypeNetworkInterface, Tags: toTags(d.Tags)},
			{ResourceType: ec2types.ResourceTypeSpotInstancesRequest, Tags: toTags(d.Tags)},
		},
	}
	if d.InstanceProfile != "" {
		lt.IamInstanceProfile = &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String(d.InstanceProfile)}
	}
	if d.UserData != "" {
		lt.UserData = aws.String(base64.StdEncoding.EncodeToString([]byte(d.UserData)))
	}
	if m := d.Metadata; m != nil {
		lt.MetadataOptions = &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{
			HttpEndpoint:            ec2types.LaunchTemplateInstanceMetadataEndpointState(aws.ToString(m.HTTPEndpoint)),
			HttpProtocolIpv6:        ec2types.LaunchTemplateInstanceMetadataProtocolIpv6(aws.ToString(m.HTTPProtocolIPv6)),
			HttpPutResponseHopLimit: aws.Int32(int32(aws.ToInt64(m.HTTPPutResponseHopLimit))),
			HttpTokens:              ec2types.LaunchTemplateHttpTokensState(aws.ToString(m.HTTPTokens)),
		}
	}
	for _, b := range d.BlockDevices {
		m := ec2types.LaunchTemplateBlockDeviceMappingRequest{DeviceName: b.DeviceName}
		if e := b.EBS; e != nil {
			m.Ebs = &ec2types.LaunchTemplateEbsBlockDeviceRequest{
				DeleteOnTermination: e.DeleteOnTermination, Encrypted: e.Encrypted, KmsKeyId: e.KMSKeyID, SnapshotId: e.SnapshotID,
				VolumeType: ec2types.VolumeType(aws.ToString(e.VolumeType)),
			}
			if e.IOPS != nil {
				m.Ebs.Iops = aws.Int32(int32(*e.IOPS))
			}
			if e.Throughput != nil {
				m.Ebs.Throughput = aws.Int32(int32(*e.Throughput))
			}
			if e.VolumeSize != nil {
				m.Ebs.VolumeSize = aws.Int32(volumeGiB(*e.VolumeSize))
			}
			m.Ebs.VolumeInitializationRate = e.VolumeInitializationRate
		}
		lt.BlockDeviceMappings = append(lt.BlockDeviceMappings, m)
	}
	if d.PublicIP != nil || aws.ToInt32(d.IPPrefixCount) > 0 || d.ConnectionTracking != nil {
		// Settings of the primary interface: EC2 then takes the groups
		// there, not beside it.
		primary := ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{
			DeviceIndex: aws.Int32(0), AssociatePublicIpAddress: d.PublicIP, Groups: d.SecurityGroups,
		}
		if aws.ToInt32(d.IPPrefixCount) > 0 {
			primary.Ipv4PrefixCount = d.IPPrefixCount
		}
		if ct := d.ConnectionTracking; ct != nil {
			primary.ConnectionTrackingSpecification = &ec2types.ConnectionTrackingSpecificationRequest{
				TcpEstablishedTimeout: ct.TCPEstablishedTimeout, UdpStreamTimeout: ct.UDPStreamTimeout, UdpTimeout: ct.UDPTimeout,
			}
		}
		lt.NetworkInterfaces = []ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{primary}
		lt.SecurityGroupIds = nil
	}
	switch {
	case d.CapacityReservation != "":
		// Only into the reservation: without room, EC2 refuses rather than
		// launching a plain On-Demand instance.
		lt.CapacityReservationSpecification = &ec2types.LaunchTemplateCapacityReservationSpecificationRequest{
			CapacityReservationPreference: ec2types.CapacityReservationPreferenceCapacityReservationsOnly,
			CapacityReservationTarget:     &ec2types.CapacityReservationTarget{CapacityReservationId: aws.String(d.CapacityReservation)},
		}
	case d.OutsideReservations:
		lt.CapacityReservationSpecification = &ec2types.LaunchTemplateCapacityReservationSpecificationRequest{
			CapacityReservationPreference: ec2types.CapacityReservationPreferenceNone,
		}
	}
	if d.PlacementGroup != "" {
		lt.Placement = &ec2types.LaunchTemplatePlacementRequest{GroupId: aws.String(d.PlacementGroup)}
		if d.Partition > 0 {
			lt.Placement.PartitionNumber = aws.Int32(int32(d.Partition))
		}
	}
	if d.NestedVirtualization != nil {
		lt.CpuOptions = &ec2types.LaunchTemplateCpuOptionsRequest{NestedVirtualization: ec2types.NestedVirtualizationSpecification(*d.NestedVirtualization)}
	}
	_, err := l.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name), LaunchTemplateData: lt,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: toTags(d.Tags)}},
	})
	if err != nil {
		fe, ok := FromAPIError(err)
		switch {
		case !ok:
			return retryable("CreateLaunchTemplate", err)
		case fe.Code == "InvalidLaunchTemplateName.AlreadyExistsException":
			return nil
		}
		return l.failure("CreateLaunchTemplate", "", "", []FleetError{fe}, causeOf(err))
	}
	return nil
}

// volumeGiB reads "20Gi", "100G", "1Ti" as GiB.
func volumeGiB(s string) int32 {
	var n int32
	var unit string
	_, _ = fmt.Sscanf(s, "%d%s", &n, &unit)
	switch unit {
	case "Ti", "T":
		return n * 1024
	default:
		return n
	}
}

func (l *Launcher) forgetTemplates() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.templates = map[string]bool{}
}

func toTags(m map[string]string) []ec2types.Tag {
	out := make([]ec2types.Tag, 0, len(m))
	for _, k := range sortedStringKeys(m) {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func (l *Launcher) createFleet(ctx context.Context, claim *v1.NodeClaim, class *awsv1.EC2NodeClass, capacityType string, configs []ec2types.FleetLaunchTemplateConfigRequest) (*ec2.CreateFleetOutput, error) {
	tags := l.ownedTags(claim.Labels[v1.NodePoolLabelKey], class)
	tags[TagNodeClaim] = claim.Name
	tags["Name"] = claim.Name
	// A reservation's instances are On-Demand instances its templates target.
	target := ec2types.DefaultTargetCapacityType(capacityType)
	if capacityType == v1.CapacityTypeReserved {
		target = ec2types.DefaultTargetCapacityTypeOnDemand
	}
	in := &ec2.CreateFleetInput{
		Type:                  ec2types.FleetTypeInstant,
		LaunchTemplateConfigs: configs,
		TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{
			TotalTargetCapacity: aws.Int32(1), DefaultTargetCapacityType: target,
		},
		TagSpecifications: []ec2types.TagSpecification{
			{ResourceType: ec2types.ResourceTypeInstance, Tags: toTags(tags)},
			{ResourceType: ec2types.ResourceTypeVolume, Tags: toTags(tags)},
			{ResourceType: ec2types.ResourceTypeFleet, Tags: toTags(tags)},
		},
		// One token per NodeClaim, capacity type and refusal: a retried launch
		// (after a restart, say) gets the instance it already made, not a
		// second one, and one after a definite "no" is asked afresh.
		ClientToken: aws.String(l.clientToken(claim, capacityType)),
	}
	if capacityType == v1.CapacityTypeSpot {
		in.SpotOptions = &ec2types.SpotOptionsRequest{AllocationStrategy: ec2types.SpotAllocationStrategyPriceCapacityOptimized}
	} else {
		in.OnDemandOptions = &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyLowestPrice}
	}
	if class.Spec.Context != nil {
		in.Context = class.Spec.Context
	}
	return l.ec2.CreateFleet(ctx, in)
}

func (l *Launcher) clientToken(claim *v1.NodeClaim, capacityType string) string {
	l.mu.Lock()
	refused := l.refused[claim.UID]
	l.mu.Unlock()
	key := string(claim.UID) + "/" + claim.Name + "/" + capacityType
	if refused > 0 {
		key += "/" + strconv.Itoa(refused)
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}
