package ec2sim

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"strconv"
)

// placementGroup is an EC2 placement group. Instances launched from a
// template that names it run in it, held to its strategy as EC2 holds
// them: a cluster group lives in the zone of its first running instance
// and takes only the types that support it, a spread group at most seven
// running instances per zone, a partition group spreads its instances over
// its partitions.
type placementGroup struct {
	id, name, strategy, spreadLevel string
	partitions                      int
	tags                            map[string]string
}

// PlacementGroupConfig is a placement group the account holds from the start.
type PlacementGroupConfig struct {
	Name string `json:"name"`
	// Strategy is cluster, partition or spread.
	Strategy string `json:"strategy"`
	// PartitionCount of a partition group, 1–7 (2 when unset).
	PartitionCount int               `json:"partitionCount,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
}

// spreadLimit is how many running instances a rack-level spread group holds
// in one zone.
const spreadLimit = 7

type placementGroupXML struct {
	GroupName      string     `xml:"groupName"`
	GroupID        string     `xml:"groupId"`
	GroupARN       string     `xml:"groupArn"`
	State          string     `xml:"state"`
	Strategy       string     `xml:"strategy"`
	PartitionCount int        `xml:"partitionCount,omitempty"`
	SpreadLevel    string     `xml:"spreadLevel,omitempty"`
	Tags           *tagSetXML `xml:"tagSet"`
}

type createPlacementGroupResponse struct {
	XMLName        xml.Name          `xml:"CreatePlacementGroupResponse"`
	Xmlns          string            `xml:"xmlns,attr"`
	RequestID      string            `xml:"requestId"`
	PlacementGroup placementGroupXML `xml:"placementGroup"`
}

type describePlacementGroupsResponse struct {
	XMLName         xml.Name            `xml:"DescribePlacementGroupsResponse"`
	Xmlns           string              `xml:"xmlns,attr"`
	RequestID       string              `xml:"requestId"`
	PlacementGroups []placementGroupXML `xml:"placementGroupSet>item"`
}

type deletePlacementGroupResponse struct {
	XMLName   xml.Name `xml:"DeletePlacementGroupResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	RequestID string   `xml:"requestId"`
	Return    bool     `xml:"return"`
}

func (s *Server) placementGroupXML(g *placementGroup) placementGroupXML {
	return placementGroupXML{GroupName: g.name, GroupID: g.id, GroupARN: s.arn("ec2", "placement-group/"+g.name), State: "available",
		Strategy: g.strategy, PartitionCount: g.partitions, SpreadLevel: g.spreadLevel, Tags: tagSet(g.tags)}
}

func (s *Server) createPlacementGroup(p *params) (any, *apiError) {
	if err := taggable(p, "placement-group"); err != nil {
		return nil, err
	}
	c := PlacementGroupConfig{Name: p.get("GroupName"), Strategy: p.get("Strategy"), Tags: p.tags("placement-group")}
	if n := p.get("PartitionCount"); n != "" {
		count, err := strconv.Atoi(n)
		if err != nil {
			return nil, invalidParameter("PartitionCount must be a number")
		}
		c.PartitionCount = count
	}
	g, apiErr := s.addPlacementGroup(c)
	if apiErr != nil {
		return nil, apiErr
	}
	return &createPlacementGroupResponse{Xmlns: xmlns, PlacementGroup: s.placementGroupXML(g)}, nil
}

// AddPlacementGroup makes a placement group as the account's owner would,
// outside the controller's permissions, and returns its id.
func (s *Server) AddPlacementGroup(c PlacementGroupConfig) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, apiErr := s.addPlacementGroup(c)
	if apiErr != nil {
		return "", apiErr
	}
	return g.id, nil
}

func (s *Server) addPlacementGroup(c PlacementGroupConfig) (*placementGroup, *apiError) {
	if c.Name == "" {
		return nil, &apiError{status: http.StatusBadRequest, code: "MissingParameter", message: "The request must contain the parameter GroupName"}
	}
	if _, ok := s.placementGroups[c.Name]; ok {
		return nil, &apiError{status: http.StatusBadRequest, code: "InvalidPlacementGroup.Duplicate", message: fmt.Sprintf("The Placement Group '%s' already exists.", c.Name)}
	}
	g := &placementGroup{name: c.Name, strategy: c.Strategy, tags: map[string]string{}}
	switch c.Strategy {
	case "cluster":
	case "spread":
		g.spreadLevel = "rack"
	case "partition":
		g.partitions = c.PartitionCount
		if g.partitions == 0 {
			g.partitions = 2
		}
		if g.partitions < 1 || g.partitions > 7 {
			return nil, invalidParameter("The partition count %d is not valid; a partition placement group has 1 to 7 partitions", g.partitions)
		}
	default:
		return nil, invalidParameter("Value (%s) for parameter strategy is invalid. Valid values: cluster, spread, partition", c.Strategy)
	}
	for k, v := range c.Tags {
		g.tags[k] = v
	}
	// EC2's ids are pg- and 17 hex digits, as the EC2NodeClass pattern expects.
	g.id = s.nextID("pg")
	s.placementGroups[g.name] = g
	s.placementGroupOrder = append(s.placementGroupOrder, g.name)
	return g, nil
}

// describePlacementGroups lists groups by name, id or filters; a name or id
// EC2 does not know fails the request, as on EC2.
func (s *Server) describePlacementGroups(p *params) (any, *apiError) {
	names, ids := p.strings("GroupName"), p.strings("GroupId")
	filters, apiErr := p.filters(true, "group-name", "group-arn", "group-id", "state", "strategy", "spread-level")
	if apiErr != nil {
		return nil, apiErr
	}
	for _, n := range names {
		if _, ok := s.placementGroups[n]; !ok {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidPlacementGroup.Unknown", message: fmt.Sprintf("The Placement Group '%s' is unknown.", n)}
		}
	}
	for _, id := range ids {
		if s.placementGroupByID(id) == nil {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidPlacementGroupId.NotFound", message: fmt.Sprintf("The Placement Group ID '%s' does not exist.", id)}
		}
	}
	out := &describePlacementGroupsResponse{Xmlns: xmlns}
	for _, n := range s.placementGroupOrder {
		g := s.placementGroups[n]
		if (len(names) > 0 && !contains(names, g.name)) || (len(ids) > 0 && !contains(ids, g.id)) {
			continue
		}
		if !filters.match("group-name", g.name) || !filters.match("group-id", g.id) || !filters.match("group-arn", s.arn("ec2", "placement-group/"+g.name)) ||
			!filters.match("state", "available") || !filters.match("strategy", g.strategy) || !filters.match("spread-level", g.spreadLevel) || !matchesTags(g.tags, filters) {
			continue
		}
		out.PlacementGroups = append(out.PlacementGroups, s.placementGroupXML(g))
	}
	return out, nil
}

// deletePlacementGroup refuses while the group holds running instances.
func (s *Server) deletePlacementGroup(p *params) (any, *apiError) {
	name := p.get("GroupName")
	g, ok := s.placementGroups[name]
	if !ok {
		return nil, &apiError{status: http.StatusBadRequest, code: "InvalidPlacementGroup.Unknown", message: fmt.Sprintf("The Placement Group '%s' is unknown.", name)}
	}
	if s.running(func(i *Instance) bool { return i.PlacementGroup == g.name }) > 0 {
		return nil, &apiError{status: http.StatusBadRequest, code: "InvalidPlacementGroup.InUse", message: fmt.Sprintf("The Placement Group '%s' is in use and may not be deleted.", name)}
	}
	delete(s.placementGroups, name)
	for i, n := range s.placementGroupOrder {
		if n == name {
			s.placementGroupOrder = append(s.placementGroupOrder[:i], s.placementGroupOrder[i+1:]...)
			break
		}
	}
	return &deletePlacementGroupResponse{Xmlns: xmlns, Return: true}, nil
}

func (s *Server) placementGroupByID(id string) *placementGroup {
	for _, g := range s.placementGroups {
		if g.id == id {
			return g
		}
	}
	return nil
}

// templateGroup is the placement group a template names; nil when it names
// none, an error when EC2 does not know the one it names.
func (s *Server) templateGroup(lt *launchTemplate) (*placementGroup, string, string) {
	if lt == nil || (lt.placementGroupID == "" && lt.placementGroupName == "") {
		return nil, "", ""
	}
	if lt.placementGroupID != "" {
		if g := s.placementGroupByID(lt.placementGroupID); g != nil {
			return g, "", ""
		}
		return nil, "InvalidPlacementGroupId.NotFound", fmt.Sprintf("The Placement Group ID '%s' does not exist.", lt.placementGroupID)
	}
	if g, ok := s.placementGroups[lt.placementGroupName]; ok {
		return g, "", ""
	}
	return nil, "InvalidPlacementGroup.Unknown", fmt.Sprintf("The Placement Group '%s' is unknown.", lt.placementGroupName)
}

// placementError says why an instance of the candidate cannot run in the
// placement group its template names; "" when it can or names none. Locked.
func (s *Server) placementError(c candidate) (string, string) {
	g, code, msg := s.templateGroup(c.template)
	if code != "" || g == nil {
		return code, msg
	}
	t := s.types[c.typeName]
	if !t.SupportsPlacement(g.strategy) {
		return "InvalidParameterCombination", fmt.Sprintf("The instance type %s is not supported in %s placement groups.", c.typeName, g.strategy)
	}
	inGroup := func(zone string) func(*Instance) bool {
		return func(i *Instance) bool { return i.PlacementGroup == g.name && (zone == "" || i.Zone == zone) }
	}
	switch g.strategy {
	case "cluster":
		// The group is where its running instances are; elsewhere there is
		// no capacity for it.
		for _, inst := range s.instances {
			if inGroup("")(inst) && inst.State != "terminated" && inst.State != "shutting-down" && inst.Zone != c.subnet.Zone {
				return "InsufficientInstanceCapacity", fmt.Sprintf("We currently do not have sufficient %s capacity in the Availability Zone you requested (%s). Our system will be working on provisioning additional capacity.", c.typeName, c.subnet.Zone)
			}
		}
	case "spread":
		if s.running(inGroup(c.subnet.Zone)) >= spreadLimit {
			return "InsufficientInstanceCapacity", "You've reached the limit of instances in this spread placement group. A spread placement group can have up to seven instances per Availability Zone."
		}
	case "partition":
		if n := c.template.partitionNumber; n != 0 && (n < 1 || n > g.partitions) {
			return "InvalidParameterValue", fmt.Sprintf("The partition number %d is not valid for placement group '%s', which has %d partitions.", n, g.name, g.partitions)
		}
	}
	return "", ""
}

// partitionText is a partition number as the placement-partition-number
// filter compares it; "" for none.
func partitionText(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// place puts a launched instance in its template's group: the partition the
// template asks for, else the one with the fewest instances. Locked.
func (s *Server) place(inst *Instance, lt *launchTemplate) {
	g, _, _ := s.templateGroup(lt)
	if g == nil {
		return
	}
	inst.PlacementGroup, inst.placementGroupID = g.name, g.id
	if g.strategy != "partition" {
		return
	}
	if lt.partitionNumber != 0 {
		inst.PartitionNumber = lt.partitionNumber
		return
	}
	best, fewest := 1, -1
	for n := 1; n <= g.partitions; n++ {
		count := s.running(func(i *Instance) bool { return i.PlacementGroup == g.name && i.PartitionNumber == n })
		if fewest < 0 || count < fewest {
			best, fewest = n, count
		}
	}
	inst.PartitionNumber = best
}
