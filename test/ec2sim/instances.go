package ec2sim

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"
)

const (
	spot     = "spot"
	onDemand = "on-demand"
)

var states = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

// candidate is one override of a fleet request: a type in a subnet.
type candidate struct {
	template *launchTemplate
	typeName string
	subnet   SubnetConfig
	priority float64
	price    float64
}

func (s *Server) subnetByID(id string) (SubnetConfig, bool) {
	for _, sn := range s.cfg.Subnets {
		if sn.ID == id {
			return sn, true
		}
	}
	return SubnetConfig{}, false
}

func (s *Server) templateFrom(p *params) (*launchTemplate, *apiError) {
	name, id := p.get("LaunchTemplateName"), p.get("LaunchTemplateId")
	for _, t := range s.templates {
		if (name != "" && t.name == name) || (id != "" && t.id == id) {
			return t, nil
		}
	}
	if id != "" {
		return nil, &apiError{status: http.StatusBadRequest, code: "InvalidLaunchTemplateId.NotFound", message: fmt.Sprintf("The specified launch template, with template ID %s, does not exist.", id)}
	}
	return nil, &apiError{status: http.StatusBadRequest, code: "InvalidLaunchTemplateName.NotFoundException", message: fmt.Sprintf("The specified launch template, with template name %s, does not exist.", name)}
}

// running counts live instances that match and the vCPUs of those of one capacity type.
func (s *Server) running(match func(*Instance) bool) (count int) {
	for _, inst := range s.instances {
		if inst.State != "terminated" && inst.State != "shutting-down" && match(inst) {
			count++
		}
	}
	return count
}

func (s *Server) vcpusOf(capacityType string) int64 {
	var total int64
	for _, inst := range s.instances {
		if inst.State != "terminated" && inst.State != "shutting-down" && inst.CapacityType == capacityType {
			total += s.types[inst.Type].VCPU
		}
	}
	return total
}

// launchError says why one instance of the candidate cannot launch now, as an
// EC2 error code and message; "" when it can.
func (s *Server) launchError(c candidate, capacityType string) (string, string) {
	t, ok := s.types[c.typeName]
	if !ok {
		return "InvalidParameterValue", fmt.Sprintf("Invalid value '%s' for InstanceType.", c.typeName)
	}
	if c.template != nil {
		if code, msg := typeError(c.template.options, t); code != "" {
			return code, msg
		}
		if code, msg := s.placementError(c); code != "" {
			return code, msg
		}
	}
	if c.template != nil && c.template.reservation != "" {
		// Room in the reservation is the only capacity that counts.
		if code, msg := s.reservationError(c, capacityType); code != "" {
			return code, msg
		}
		if c.subnet.AvailableIPs <= 0 {
			return "InsufficientFreeAddressesInSubnet", fmt.Sprintf("There are not enough free addresses in subnet '%s' to satisfy the requested number of instances.", c.subnet.ID)
		}
		return "", ""
	}
	if s.openReservation(c, capacityType) != nil {
		// Capacity an open reservation holds is there: no capacity fault.
		if c.subnet.AvailableIPs <= 0 {
			return "InsufficientFreeAddressesInSubnet", fmt.Sprintf("There are not enough free addresses in subnet '%s' to satisfy the requested number of instances.", c.subnet.ID)
		}
		return "", ""
	}
	f := s.cfg.Faults
	if capacityType == spot && f.NoSpotServiceLinkedRole {
		return "AuthFailure.ServiceLinkedRoleCreationNotPermitted", "The provided credentials do not have permission to create the service-linked role for EC2 Spot Instances."
	}
	if (capacityType == onDemand && s.onDemandPrice(t) <= 0) || (capacityType == spot && s.spotPrice(t, c.subnet.Zone) <= 0) {
		return "Unsupported", fmt.Sprintf("Your requested instance type (%s) is not supported in your requested Availability Zone (%s).", t.Name, c.subnet.Zone)
	}
	for _, r := range f.Unfulfillable {
		if r.matches(t.Name, c.subnet.Zone, capacityType) {
			return "UnfulfillableCapacity", "Unable to fulfill capacity due to your request configuration. Please adjust your request and try again."
		}
	}
	if capacityType == spot && f.SpotVCPUQuota != nil && s.vcpusOf(spot)+t.VCPU > *f.SpotVCPUQuota {
		return "MaxSpotInstanceCountExceeded", "Max spot instance count exceeded"
	}
	if capacityType == onDemand && f.OnDemandVCPUQuota != nil && s.vcpusOf(onDemand)+t.VCPU > *f.OnDemandVCPUQuota {
		return "VcpuLimitExceeded", fmt.Sprintf("You have requested more vCPU capacity than your current vCPU limit of %d allows for the instance bucket that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.", *f.OnDemandVCPUQuota)
	}
	for _, r := range f.Capacity {
		if !r.matches(t.Name, c.subnet.Zone, capacityType) {
			continue
		}
		used := s.running(func(i *Instance) bool { return r.matches(i.Type, i.Zone, i.CapacityType) })
		if used >= r.Max {
			return "InsufficientInstanceCapacity", fmt.Sprintf("We currently do not have sufficient %s capacity in the Availability Zone you requested (%s). Our system will be working on provisioning additional capacity.", t.Name, c.subnet.Zone)
		}
		break
	}
	if c.subnet.AvailableIPs <= 0 {
		return "InsufficientFreeAddressesInSubnet", fmt.Sprintf("There are not enough free addresses in subnet '%s' to satisfy the requested number of instances.", c.subnet.ID)
	}
	return "", ""
}

func (s *Server) launch(c candidate, capacityType string, tags map[string]string, token string) *Instance {
	t := s.types[c.typeName]
	inst := &Instance{
		ID: s.nextID("i"), Type: t.Name, Zone: c.subnet.Zone, SubnetID: c.subnet.ID, CapacityType: capacityType,
		State: "running", LaunchTime: s.clock.Now().UTC(), Tags: map[string]string{}, ClientToken: token,
		privateIP: fmt.Sprintf("10.0.%d.%d", (s.seq/250)%250, s.seq%250+1),
	}
	if c.template != nil {
		inst.ImageID, inst.UserData = c.template.imageID, c.template.userData
		inst.SecurityGroupIDs = append([]string(nil), c.template.securityGroups...)
		inst.Options = c.template.options
		inst.CapacityReservationID = c.template.reservation
		// The request's tags win over the template's for the same key.
		for k, v := range c.template.tagSpecs["instance"] {
			inst.Tags[k] = v
		}
	}
	for k, v := range tags {
		inst.Tags[k] = v
	}
	if cr := s.openReservation(c, capacityType); cr != nil {
		inst.CapacityReservationID = cr.id
	}
	s.place(inst, c.template)
	for i := range s.cfg.Subnets {
		if s.cfg.Subnets[i].ID == c.subnet.ID {
			s.cfg.Subnets[i].AvailableIPs--
		}
	}
	s.instances[inst.ID] = inst
	s.order = append(s.order, inst.ID)
	return inst
}

func (s *Server) createFleet(p *params) (any, *apiError) {
	if p.get("Type") != "instant" {
		return nil, invalidParameter("Only fleets of type instant are simulated; got Type=%q", p.get("Type"))
	}
	token := p.get("ClientToken")
	if prev, ok := s.fleetsByToken[token]; ok && token != "" {
		return prev, nil
	}
	capacityType := p.get("TargetCapacitySpecification.DefaultTargetCapacityType")
	if capacityType != spot && capacityType != onDemand {
		return nil, invalidParameter("TargetCapacitySpecification.DefaultTargetCapacityType must be spot or on-demand, got %q", capacityType)
	}
	target, err := strconv.Atoi(p.get("TargetCapacitySpecification.TotalTargetCapacity"))
	if err != nil || target < 1 {
		return nil, invalidParameter("TargetCapacitySpecification.TotalTargetCapacity must be a positive number")
	}
	var candidates []candidate
	for _, cfg := range p.list("LaunchTemplateConfigs") {
		lt, apiErr := s.templateFrom(cfg.sub("LaunchTemplateSpecification"))
		if apiErr != nil {
			return nil, apiErr
		}
		for _, o := range cfg.list("Overrides") {
			c := candidate{template: lt, typeName: o.get("InstanceType")}
			if sn, ok := s.subnetByID(o.get("SubnetId")); ok {
				c.subnet = sn
			} else if o.get("SubnetId") != "" {
				return nil, &apiError{status: http.StatusBadRequest, code: "InvalidSubnetID.NotFound", message: fmt.Sprintf("The subnet ID '%s' does not exist", o.get("SubnetId"))}
			} else {
				c.subnet = SubnetConfig{Zone: o.get("AvailabilityZone"), AvailableIPs: 1}
			}
			if pr := o.get("Priority"); pr != "" {
				c.priority, _ = strconv.ParseFloat(pr, 64)
			}
			if t, ok := s.types[c.typeName]; ok {
				if capacityType == spot {
					c.price = s.spotPrice(t, c.subnet.Zone)
				} else {
					c.price = s.onDemandPrice(t)
				}
			}
			candidates = append(candidates, c)
		}
	}
	if len(candidates) == 0 {
		return nil, invalidParameter("LaunchTemplateConfigs need at least one override")
	}
	strategy := p.get("SpotOptions.AllocationStrategy")
	if capacityType == onDemand {
		strategy = p.get("OnDemandOptions.AllocationStrategy")
	}
	sort.SliceStable(candidates, func(i, j int) bool {
		if strategy == "prioritized" || strategy == "capacity-optimized-prioritized" {
			return candidates[i].priority < candidates[j].priority
		}
		// lowest-price and price-capacity-optimized: the simulator's capacity
		// pools are all deep, so price decides.
		return candidates[i].price < candidates[j].price
	})

	if err := taggable(p, "fleet", "instance", "volume"); err != nil {
		return nil, err
	}
	resp := &createFleetResponse{Xmlns: xmlns, FleetID: s.nextID("fleet")}
	// As on EC2, the fleet's own tags stay on the fleet.
	tags, volumeTags := p.tags("instance"), p.tags("volume")
	var subnets []string
	for _, c := range candidates {
		if c.subnet.ID != "" && !contains(subnets, c.subnet.ID) {
			subnets = append(subnets, c.subnet.ID)
		}
	}
	lifecycle := capacityType
	reported := map[string]bool{}
	// What a template allows does not change within the request: checked
	// once per template, not per override and instance.
	templateErrs := map[*launchTemplate][2]string{}
	for launched := 0; launched < target; {
		placed := false
		for _, c := range candidates {
			te, ok := templateErrs[c.template]
			if !ok {
				te[0], te[1] = s.templateError(c.template, subnets, capacityType, tags, volumeTags)
				templateErrs[c.template] = te
			}
			code, msg := te[0], te[1]
			if code == "" {
				code, msg = s.launchError(c, capacityType)
			}
			if code != "" {
				key := c.typeName + "/" + c.subnet.ID + "/" + c.subnet.Zone + "/" + code
				if !reported[key] {
					reported[key] = true
					resp.Errors = append(resp.Errors, fleetErrorXML{LaunchTemplateAndOverrides: overridesOf(c), Lifecycle: lifecycle, ErrorCode: code, ErrorMessage: msg})
				}
				continue
			}
			inst := s.launch(c, capacityType, tags, token)
			resp.FleetInstances = append(resp.FleetInstances, fleetInstanceXML{
				LaunchTemplateAndOverrides: overridesOf(c), Lifecycle: lifecycle, InstanceIDs: stringItems{Items: []string{inst.ID}}, InstanceType: inst.Type,
			})
			launched++
			placed = true
			break
		}
		if !placed {
			break
		}
	}
	if token != "" {
		s.fleetsByToken[token] = resp
	}
	return resp, nil
}

func overridesOf(c candidate) ltAndOverridesXML {
	out := ltAndOverridesXML{Overrides: overridesXML{InstanceType: c.typeName, SubnetID: c.subnet.ID, AvailabilityZone: c.subnet.Zone, Priority: c.priority}}
	if c.template != nil {
		out.LaunchTemplateSpecification = launchTemplateSpecXML{LaunchTemplateID: c.template.id, LaunchTemplateName: c.template.name, Version: "$Latest"}
	}
	return out
}

func (s *Server) runInstances(p *params) (any, *apiError) {
	var lt *launchTemplate
	if p.get("LaunchTemplate.LaunchTemplateName") != "" || p.get("LaunchTemplate.LaunchTemplateId") != "" {
		var apiErr *apiError
		if lt, apiErr = s.templateFrom(p.sub("LaunchTemplate")); apiErr != nil {
			return nil, apiErr
		}
	}
	count, err := strconv.Atoi(p.get("MinCount"))
	if err != nil || count < 1 {
		return nil, invalidParameter("MinCount must be a positive number")
	}
	sn, ok := s.subnetByID(p.get("SubnetId"))
	if !ok {
		sn = s.cfg.Subnets[0]
	}
	c := candidate{template: lt, typeName: p.get("InstanceType"), subnet: sn}
	capacityType := onDemand
	if p.get("InstanceMarketOptions.MarketType") == spot {
		capacityType = spot
	}
	resp := &runInstancesResponse{Xmlns: xmlns, ReservationID: s.nextID("r"), OwnerID: "123456789012"}
	if lt != nil {
		if code, msg := s.templateError(lt, []string{sn.ID}, capacityType, p.tags("instance"), p.tags("volume")); code != "" {
			status := http.StatusBadRequest
			if code == "UnauthorizedOperation" {
				status = http.StatusForbidden
			}
			return nil, &apiError{status: status, code: code, message: msg}
		}
	}
	for i := 0; i < count; i++ {
		if code, msg := s.launchError(c, capacityType); code != "" {
			return nil, &apiError{status: http.StatusBadRequest, code: code, message: msg}
		}
	}
	for i := 0; i < count; i++ {
		inst := s.launch(c, capacityType, p.tags("instance"), p.get("ClientToken"))
		if imageID := p.get("ImageId"); imageID != "" {
			inst.ImageID = imageID
		}
		resp.Instances = append(resp.Instances, s.instanceXML(inst))
	}
	return resp, nil
}

func (s *Server) instanceXML(inst *Instance) instanceXML {
	arch := "x86_64"
	if s.types[inst.Type].Arch == "arm64" {
		arch = "arm64"
	}
	out := instanceXML{
		InstanceID: inst.ID, ImageID: inst.ImageID, State: stateXML{Code: states[inst.State], Name: inst.State},
		PrivateDNSName: "ip-" + inst.privateIP + ".ec2.internal", InstanceType: inst.Type,
		LaunchTime: inst.LaunchTime.Format(time.RFC3339), Placement: placementXML{AvailabilityZone: inst.Zone, GroupName: inst.PlacementGroup, GroupID: inst.placementGroupID, PartitionNumber: inst.PartitionNumber},
		SubnetID: inst.SubnetID, PrivateIPAddress: inst.privateIP, Architecture: arch, ClientToken: inst.ClientToken, Tags: tagSet(inst.Tags),
	}
	for _, id := range inst.SecurityGroupIDs {
		out.Groups = append(out.Groups, groupXML{GroupID: id})
	}
	out.CapacityReservationID = inst.CapacityReservationID
	if inst.CapacityType == spot {
		out.InstanceLifecycle = spot
		out.SpotRequestID = "sir-" + inst.ID[2:]
	}
	return out
}

// settle ends interrupted Spot instances once their two-minute notice is up.
func (s *Server) settle() {
	now := s.clock.Now()
	for _, inst := range s.instances {
		if inst.Interrupted && inst.State != "terminated" && !now.Before(inst.TerminateAt) {
			inst.State = "terminated"
			s.freeAddress(inst)
			s.publishStateLocked(inst.ID, "terminated")
		}
	}
}

func (s *Server) describeInstances(p *params) (any, *apiError) {
	s.settle()
	ids := p.strings("InstanceId")
	for _, id := range ids {
		if _, ok := s.instances[id]; !ok {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidInstanceID.NotFound", message: fmt.Sprintf("The instance ID '%s' does not exist", id)}
		}
	}
	filters, apiErr := p.filters(true, "instance-state-name", "instance-id", "availability-zone", "placement-group-name", "placement-partition-number")
	if apiErr != nil {
		return nil, apiErr
	}
	var matched []*Instance
	for _, id := range s.order {
		inst := s.instances[id]
		if len(ids) > 0 && !contains(ids, id) {
			continue
		}
		if !filters.match("instance-state-name", inst.State) {
			continue
		}
		if !filters.match("instance-id", inst.ID) {
			continue
		}
		if !filters.match("availability-zone", inst.Zone) {
			continue
		}
		if !filters.match("placement-group-name", inst.PlacementGroup) || !filters.match("placement-partition-number", partitionText(inst.PartitionNumber)) {
			continue
		}
		if !matchesTags(inst.Tags, filters) {
			continue
		}
		matched = append(matched, inst)
	}
	items, next, apiErr := page(matched, p, 1000)
	if apiErr != nil {
		return nil, apiErr
	}
	resp := &describeInstancesResponse{Xmlns: xmlns, NextToken: next}
	for _, inst := range items {
		resp.Reservations = append(resp.Reservations, reservationXML{ReservationID: "r-" + inst.ID[2:], OwnerID: "123456789012", Instances: []instanceXML{s.instanceXML(inst)}})
	}
	return resp, nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func (s *Server) terminateInstances(p *params) (any, *apiError) {
	ids := p.strings("InstanceId")
	if len(ids) == 0 {
		return nil, &apiError{status: http.StatusBadRequest, code: "MissingParameter", message: "The request must contain the parameter InstanceId"}
	}
	for _, id := range ids {
		if _, ok := s.instances[id]; !ok {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidInstanceID.NotFound", message: fmt.Sprintf("The instance ID '%s' does not exist", id)}
		}
	}
	resp := &terminateInstancesResponse{Xmlns: xmlns}
	for _, id := range ids {
		inst := s.instances[id]
		prev := inst.State
		if prev != "terminated" {
			s.freeAddress(inst)
			s.publishStateLocked(id, "shutting-down")
		}
		inst.State = "terminated"
		resp.Instances = append(resp.Instances, stateChangeXML{InstanceID: id, PreviousState: stateXML{Code: states[prev], Name: prev}, CurrentState: stateXML{Code: 48, Name: "terminated"}})
	}
	return resp, nil
}

func (s *Server) createTags(p *params) (any, *apiError) {
	ids := p.strings("ResourceId")
	tags := map[string]string{}
	for _, t := range p.list("Tag") {
		tags[t.get("Key")] = t.get("Value")
	}
	for _, id := range ids {
		if inst, ok := s.instances[id]; ok {
			for k, v := range tags {
				inst.Tags[k] = v
			}
			continue
		}
		found := false
		for _, lt := range s.templates {
			if lt.id == id {
				for k, v := range tags {
					lt.tags[k] = v
				}
				found = true
			}
		}
		if !found {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidID", message: fmt.Sprintf("The ID '%s' is not valid", id)}
		}
	}
	return &returnResponse{XMLName: xmlName("CreateTagsResponse"), Xmlns: xmlns, Return: true}, nil
}

// freeAddress gives an ending instance's address back to its subnet; locked.
func (s *Server) freeAddress(inst *Instance) {
	for i := range s.cfg.Subnets {
		if s.cfg.Subnets[i].ID == inst.SubnetID {
			s.cfg.Subnets[i].AvailableIPs++
		}
	}
}

// templateError is why no instance can launch from the template at all: its
// instance profile does not exist, or the policy denies the launch; locked.
func (s *Server) templateError(lt *launchTemplate, subnets []string, capacityType string, instanceTags, volumeTags map[string]string) (string, string) {
	if lt == nil {
		return "", ""
	}
	// A profile EC2 does not see yet fails as one that does not exist.
	if p := s.profiles[lt.instanceProfile]; lt.instanceProfile != "" && (p == nil || s.clock.Now().Before(p.visible)) {
		return "InvalidParameterValue", fmt.Sprintf("Value (%s) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name", lt.instanceProfile)
	}
	if msg := s.launchDenied(lt, subnets, capacityType, instanceTags, volumeTags); msg != "" {
		return "UnauthorizedOperation", "You are not authorized to perform this operation. " + msg
	}
	return "", ""
}
