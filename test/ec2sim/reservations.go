package ec2sim

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// capacityReservation is an On-Demand Capacity Reservation: room for
// Total instances of one type in one zone. Instances launched from a
// template that targets it run in it while it has room; its available
// count is what its running instances leave.
type capacityReservation struct {
	id, instanceType, zone, platform string
	total                            int
	matchCriteria                    string
	state                            string
	endDate                          *time.Time
	created                          time.Time
	tags                             map[string]string
}

// reservationAvailable is the room a reservation has left; locked.
func (s *Server) reservationAvailable(cr *capacityReservation) int {
	return cr.total - s.running(func(i *Instance) bool { return i.CapacityReservationID == cr.id })
}

type capacityReservationXML struct {
	ID                     string     `xml:"capacityReservationId"`
	OwnerID                string     `xml:"ownerId"`
	ARN                    string     `xml:"capacityReservationArn"`
	AvailabilityZone       string     `xml:"availabilityZone"`
	AvailabilityZoneID     string     `xml:"availabilityZoneId"`
	InstanceType           string     `xml:"instanceType"`
	InstancePlatform       string     `xml:"instancePlatform"`
	Tenancy                string     `xml:"tenancy"`
	TotalInstanceCount     int        `xml:"totalInstanceCount"`
	AvailableInstanceCount int        `xml:"availableInstanceCount"`
	InstanceMatchCriteria  string     `xml:"instanceMatchCriteria"`
	State                  string     `xml:"state"`
	EndDateType            string     `xml:"endDateType"`
	EndDate                string     `xml:"endDate,omitempty"`
	CreateDate             string     `xml:"createDate"`
	ReservationType        string     `xml:"reservationType"`
	Tags                   *tagSetXML `xml:"tagSet"`
}

type capacityReservationResponse struct {
	XMLName             xml.Name               `xml:"CreateCapacityReservationResponse"`
	Xmlns               string                 `xml:"xmlns,attr"`
	RequestID           string                 `xml:"requestId"`
	CapacityReservation capacityReservationXML `xml:"capacityReservation"`
}

type describeCapacityReservationsResponse struct {
	XMLName              xml.Name                 `xml:"DescribeCapacityReservationsResponse"`
	Xmlns                string                   `xml:"xmlns,attr"`
	RequestID            string                   `xml:"requestId"`
	CapacityReservations []capacityReservationXML `xml:"capacityReservationSet>item"`
	NextToken            string                   `xml:"nextToken,omitempty"`
}

type cancelCapacityReservationResponse struct {
	XMLName   xml.Name `xml:"CancelCapacityReservationResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	RequestID string   `xml:"requestId"`
	Return    bool     `xml:"return"`
}

func (s *Server) reservationXML(cr *capacityReservation) capacityReservationXML {
	out := capacityReservationXML{ID: cr.id, OwnerID: accountID, ARN: s.arn("ec2", "capacity-reservation/"+cr.id), AvailabilityZone: cr.zone,
		AvailabilityZoneID: zoneID(cr.zone), InstanceType: cr.instanceType, InstancePlatform: cr.platform, Tenancy: "default",
		TotalInstanceCount: cr.total, AvailableInstanceCount: s.reservationAvailable(cr), InstanceMatchCriteria: cr.matchCriteria,
		State: cr.state, EndDateType: "unlimited", CreateDate: cr.created.Format(time.RFC3339), ReservationType: "default", Tags: tagSet(cr.tags)}
	if cr.endDate != nil {
		out.EndDateType, out.EndDate = "limited", cr.endDate.Format(time.RFC3339)
	}
	return out
}

// createCapacityReservation reserves room, as EC2 does, for a type of the
// catalog in a zone of the account; the reservation is active at once.
func (s *Server) createCapacityReservation(p *params) (any, *apiError) {
	platform := p.get("InstancePlatform")
	if platform == "" {
		return nil, &apiError{status: http.StatusBadRequest, code: "MissingParameter", message: "The request must contain the parameter InstancePlatform"}
	}
	count, err := strconv.Atoi(p.get("InstanceCount"))
	if err != nil {
		return nil, invalidParameter("InstanceCount must be a positive number")
	}
	// This action's list is TagSpecifications.N, not TagSpecification.N.
	if err := taggableIn(p, "TagSpecifications", "capacity-reservation"); err != nil {
		return nil, err
	}
	c := CapacityReservationConfig{InstanceType: p.get("InstanceType"), Zone: p.get("AvailabilityZone"), Count: count,
		MatchCriteria: p.get("InstanceMatchCriteria"), Tags: p.tagsIn("TagSpecifications", "capacity-reservation")}
	switch p.get("EndDateType") {
	case "", "unlimited":
	case "limited":
		end, err := time.Parse(time.RFC3339, p.get("EndDate"))
		if err != nil {
			return nil, invalidParameter("EndDate %q is not a date", p.get("EndDate"))
		}
		c.EndDate = &end
	default:
		return nil, invalidParameter("Value (%s) for parameter endDateType is invalid. Valid values: unlimited, limited", p.get("EndDateType"))
	}
	id, err := s.reserve(c)
	if err != nil {
		return nil, invalidParameter("%s", err.Error())
	}
	cr := s.reservations[id]
	cr.platform = platform
	return &capacityReservationResponse{Xmlns: xmlns, CapacityReservation: s.reservationXML(cr)}, nil
}

// describeCapacityReservations lists reservations by id or filters; an id
// EC2 does not know fails the request, a filter it does not know too.
func (s *Server) describeCapacityReservations(p *params) (any, *apiError) {
	ids := p.strings("CapacityReservationId")
	filters, apiErr := p.filters(true, "state", "instance-type", "availability-zone", "owner-id", "instance-match-criteria", "instance-platform", "capacity-reservation-id")
	if apiErr != nil {
		return nil, apiErr
	}
	for _, id := range ids {
		if _, ok := s.reservations[id]; !ok {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidCapacityReservationId.NotFound", message: fmt.Sprintf("The capacity reservation ID '%s' does not exist", id)}
		}
	}
	if len(ids) > 0 && p.get("MaxResults") != "" {
		return nil, invalidParameter("MaxResults cannot be used with CapacityReservationIds")
	}
	var matched []capacityReservationXML
	for _, id := range s.reservationOrder {
		cr := s.reservations[id]
		if len(ids) > 0 && !contains(ids, id) {
			continue
		}
		if s.expired(cr) {
			cr.state = "expired"
		}
		if !filters.match("state", cr.state) || !filters.match("instance-type", cr.instanceType) || !filters.match("availability-zone", cr.zone) ||
			!filters.match("owner-id", accountID) || !filters.match("instance-match-criteria", cr.matchCriteria) ||
			!filters.match("instance-platform", cr.platform) || !filters.match("capacity-reservation-id", cr.id) || !matchesTags(cr.tags, filters) {
			continue
		}
		matched = append(matched, s.reservationXML(cr))
	}
	items, next, apiErr := page(matched, p, 1000)
	if apiErr != nil {
		return nil, apiErr
	}
	return &describeCapacityReservationsResponse{Xmlns: xmlns, CapacityReservations: items, NextToken: next}, nil
}

func (s *Server) expired(cr *capacityReservation) bool {
	return cr.state == "active" && cr.endDate != nil && !s.clock.Now().Before(*cr.endDate)
}

// cancelCapacityReservation ends a reservation; its instances keep running
// as plain On-Demand instances, as on EC2.
func (s *Server) cancelCapacityReservation(p *params) (any, *apiError) {
	cr, ok := s.reservations[p.get("CapacityReservationId")]
	if !ok {
		return nil, &apiError{status: http.StatusBadRequest, code: "InvalidCapacityReservationId.NotFound", message: fmt.Sprintf("The capacity reservation ID '%s' does not exist", p.get("CapacityReservationId"))}
	}
	cr.state = "cancelled"
	for _, inst := range s.instances {
		if inst.CapacityReservationID == cr.id {
			inst.CapacityReservationID = ""
		}
	}
	return &cancelCapacityReservationResponse{Xmlns: xmlns, Return: true}, nil
}

// reservationError says why an instance of the candidate cannot run in the
// reservation its template targets; "" when it can, or targets none.
func (s *Server) reservationError(c candidate, capacityType string) (string, string) {
	if c.template == nil || c.template.reservation == "" {
		return "", ""
	}
	id := c.template.reservation
	cr, ok := s.reservations[id]
	if !ok || cr.state != "active" || s.expired(cr) {
		return "InvalidCapacityReservationId.NotFound", fmt.Sprintf("The capacity reservation ID '%s' does not exist or is not active", id)
	}
	if capacityType != onDemand {
		return "InvalidParameterCombination", fmt.Sprintf("Capacity reservation %s can only be used by On-Demand instances", id)
	}
	if c.typeName != cr.instanceType || c.subnet.Zone != cr.zone {
		return "InvalidParameterCombination", fmt.Sprintf("The instance type (%s) and Availability Zone (%s) do not match capacity reservation %s (%s in %s)",
			c.typeName, c.subnet.Zone, id, cr.instanceType, cr.zone)
	}
	if s.reservationAvailable(cr) <= 0 {
		return "ReservationCapacityExceeded", fmt.Sprintf("The targeted capacity reservation %s does not have enough available capacity to fulfill your request.", id)
	}
	return "", ""
}

// Reserve makes a capacity reservation as the account's owner would, outside
// the controller's permissions, and returns its id.
func (s *Server) Reserve(c CapacityReservationConfig) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reserve(c)
}

func (s *Server) reserve(c CapacityReservationConfig) (string, error) {
	if _, ok := s.types[c.InstanceType]; !ok {
		return "", fmt.Errorf("capacity reservation: instance type %q is not in the catalog", c.InstanceType)
	}
	if !contains(s.cfg.Zones, c.Zone) {
		return "", fmt.Errorf("capacity reservation: %q is not a zone of the account (%v)", c.Zone, s.cfg.Zones)
	}
	if c.Count < 1 {
		return "", fmt.Errorf("capacity reservation: count must be positive, got %d", c.Count)
	}
	criteria := c.MatchCriteria
	if criteria == "" {
		criteria = "open"
	}
	if criteria != "open" && criteria != "targeted" {
		return "", fmt.Errorf("capacity reservation: matchCriteria is open or targeted, got %q", criteria)
	}
	cr := &capacityReservation{id: s.nextID("cr"), instanceType: c.InstanceType, zone: c.Zone, platform: "Linux/UNIX", total: c.Count,
		matchCriteria: criteria, state: "active", created: s.clock.Now().UTC(), tags: map[string]string{}, endDate: c.EndDate}
	for k, v := range c.Tags {
		cr.tags[k] = v
	}
	s.reservations[cr.id] = cr
	s.reservationOrder = append(s.reservationOrder, cr.id)
	return cr.id, nil
}

// openReservation is the open reservation an On-Demand instance of the
// candidate runs in, as on EC2: one of its type and zone with room, unless
// the template targets a reservation or opts out with preference none; nil
// when there is none. Locked.
func (s *Server) openReservation(c candidate, capacityType string) *capacityReservation {
	if capacityType != onDemand || (c.template != nil && (c.template.reservation != "" || c.template.reservationPreference == "none")) {
		return nil
	}
	for _, id := range s.reservationOrder {
		cr := s.reservations[id]
		if cr.matchCriteria == "open" && cr.state == "active" && !s.expired(cr) && cr.instanceType == c.typeName && cr.zone == c.subnet.Zone &&
			s.reservationAvailable(cr) > 0 {
			return cr
		}
	}
	return nil
}
