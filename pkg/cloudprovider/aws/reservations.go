package aws

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
)

// Labels of a node launched into a capacity reservation, Karpenter's keys.
const (
	LabelCapacityReservationID            = awsv1.Group + "/capacity-reservation-id"
	LabelCapacityReservationType          = awsv1.Group + "/capacity-reservation-type"
	LabelCapacityReservationInterruptible = awsv1.Group + "/capacity-reservation-interruptible"
)

// reservedPriceDivisor makes a reserved offering's price its On-Demand
// price over ten million: the capacity is paid for whether used or not, so
// it is all but free to use, yet larger reservations still cost more than
// smaller ones (consolidation compares them).
const reservedPriceDivisor = 10_000_000

// Reservations counts what each capacity reservation can still take: EC2's
// AvailableInstanceCount as last described, less what this process launched
// into it since, plus what it terminated. Offerings are available while
// their reservation's count is above zero; a launch EC2 refuses for want of
// room sets it to zero until the next description.
type Reservations struct {
	clock clock.Clock

	mu      sync.Mutex
	counts  map[string]*reservationCount
	version uint64
}

type reservationCount struct {
	available, total int
	// synced is when EC2 last told the count.
	synced time.Time
}

// NewReservations returns an empty tracker.
func NewReservations(clk clock.Clock) *Reservations {
	return &Reservations{clock: clk, counts: map[string]*reservationCount{}}
}

// Available is how many more instances the reservation takes, as far as
// this process knows; zero for a reservation never described.
func (r *Reservations) Available(id string) int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.counts[id]; ok {
		return c.available
	}
	return 0
}

// Version changes whenever a count does, so lists built from the counts
// know when to rebuild.
func (r *Reservations) Version() uint64 {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.version
}

func (r *Reservations) sync(found []ec2types.CapacityReservation) {
	if r == nil {
		return
	}
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cr := range found {
		id := aws.ToString(cr.CapacityReservationId)
		c := r.counts[id]
		if c == nil {
			c = &reservationCount{}
			r.counts[id] = c
		}
		available, total := int(aws.ToInt32(cr.AvailableInstanceCount)), int(aws.ToInt32(cr.TotalInstanceCount))
		if c.available != available || c.total != total {
			r.version++
		}
		c.available, c.total, c.synced = available, total, now
	}
}

// Launched counts an instance launched into the reservation by a request
// sent at sent; a description taken after that already counts it.
func (r *Reservations) Launched(id string, sent time.Time) {
	r.change(id, func(c *reservationCount) {
		if c.synced.Before(sent) && c.available > 0 {
			c.available--
		}
	})
}

// Terminated gives back the room of an instance this process terminated.
func (r *Reservations) Terminated(id string) {
	r.change(id, func(c *reservationCount) {
		if c.available < c.total {
			c.available++
		}
	})
}

// Exhausted records that EC2 refused a launch for want of room: nothing more
// is launched into it until EC2 describes room again.
func (r *Reservations) Exhausted(id string) {
	r.change(id, func(c *reservationCount) { c.available = 0 })
}

func (r *Reservations) change(id string, f func(*reservationCount)) {
	if r == nil || id == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.counts[id]
	if !ok {
		return
	}
	before := c.available
	f(c)
	if c.available != before {
		r.version++
	}
}

// reservations resolves the class's capacity reservation terms: the active
// reservations each matches, expired ones left out, sorted by id. An id EC2
// does not know is a note for the class's conditions, not an error.
func (r *Resolver) reservations(ctx context.Context, terms []awsv1.CapacityReservationSelectorTerm) ([]awsv1.CapacityReservation, []string, error) {
	found := map[string]ec2types.CapacityReservation{}
	var notes []string
	active := ec2types.Filter{Name: aws.String("state"), Values: []string{string(ec2types.CapacityReservationStateActive)}}
	for _, t := range terms {
		in := &ec2.DescribeCapacityReservationsInput{Filters: []ec2types.Filter{active}}
		if t.ID != "" {
			in.CapacityReservationIds = []string{t.ID}
		} else {
			if t.OwnerID != "" {
				in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("owner-id"), Values: []string{t.OwnerID}})
			}
			if t.InstanceMatchCriteria != "" {
				in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("instance-match-criteria"), Values: []string{t.InstanceMatchCriteria}})
			}
			in.Filters = append(in.Filters, tagFilters(t.Tags)...)
		}
		pages := ec2.NewDescribeCapacityReservationsPaginator(r.ec2, in)
		for pages.HasMorePages() {
			out, err := pages.NextPage(ctx)
			if err != nil {
				if fe, ok := FromAPIError(err); ok && fe.Code == "InvalidCapacityReservationId.NotFound" {
					notes = append(notes, fmt.Sprintf("capacity reservation %s does not exist", t.ID))
					break
				}
				return nil, nil, fmt.Errorf("DescribeCapacityReservations: %w", err)
			}
			for _, cr := range out.CapacityReservations {
				found[aws.ToString(cr.CapacityReservationId)] = cr
			}
		}
	}
	now := r.Clock.Now()
	list := make([]ec2types.CapacityReservation, 0, len(found))
	for _, cr := range found {
		if cr.EndDate != nil && !cr.EndDate.After(now) {
			continue
		}
		list = append(list, cr)
	}
	sort.Slice(list, func(i, j int) bool {
		return aws.ToString(list[i].CapacityReservationId) < aws.ToString(list[j].CapacityReservationId)
	})
	r.Reservations.sync(list)
	out := make([]awsv1.CapacityReservation, 0, len(list))
	for _, cr := range list {
		s := awsv1.CapacityReservation{ID: aws.ToString(cr.CapacityReservationId), AvailabilityZone: aws.ToString(cr.AvailabilityZone),
			InstanceType: aws.ToString(cr.InstanceType), InstanceMatchCriteria: string(cr.InstanceMatchCriteria), OwnerID: aws.ToString(cr.OwnerId),
			ReservationType: awsv1.CapacityReservationTypeDefault, State: awsv1.CapacityReservationStateActive, Interruptible: aws.ToBool(cr.Interruptible)}
		if cr.ReservationType == ec2types.CapacityReservationTypeCapacityBlock {
			s.ReservationType = awsv1.CapacityReservationTypeCapacityBlock
		}
		if cr.EndDate != nil {
			end := metav1.NewTime(cr.EndDate.UTC().Truncate(time.Second))
			s.EndTime = &end
		}
		out = append(out, s)
	}
	return out, notes, nil
}

// reservationLaunchable says whether Backstop launches into a reservation: an active
// On-Demand Capacity Reservation. Capacity Blocks (their own market type and
// end-of-block reclaim) and interruptible reservations are listed in the
// class's status but not launched into.
func reservationLaunchable(cr awsv1.CapacityReservation) bool {
	return cr.ReservationType == awsv1.CapacityReservationTypeDefault && !cr.Interruptible &&
		(cr.State == "" || cr.State == awsv1.CapacityReservationStateActive)
}
