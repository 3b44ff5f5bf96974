package ec2sim

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

func xmlName(local string) xml.Name { return xml.Name{Local: local} }

func (s *Server) describeInstanceTypes(p *params) (any, *apiError) {
	names := p.strings("InstanceType")
	for _, n := range names {
		if _, ok := s.types[n]; !ok {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidInstanceType", message: fmt.Sprintf("The following supplied instance types do not exist: [%s]", n)}
		}
	}
	if len(names) == 0 {
		names = s.typeNames
	}
	var items []instanceTypeXML
	for _, n := range names {
		t := s.types[n]
		arch := "x86_64"
		if t.Arch == "arm64" {
			arch = "arm64"
		}
		it := instanceTypeXML{
			InstanceType: t.Name, CurrentGeneration: true, BareMetal: t.BareMetal, Hypervisor: t.Hypervisor,
			Architectures: stringItems{Items: []string{arch}}, Manufacturer: manufacturerName(t.CPUManufacturer),
			DefaultVCPUs: t.VCPU, MemoryMiB: t.MemoryMiB, MaxENIs: t.MaxENIs, IPv4PerENI: t.IPv4PerENI,
			NetworkPerformance: fmt.Sprintf("%d Megabit", t.NetworkBandwidthMbps), LocalStorageGB: t.LocalNVMeGiB, Burstable: t.Burstable,
			EBSBandwidthMbps: t.EBSBandwidthMbps, Features: t.SupportedFeatures, EncryptionInTransit: t.EncryptionInTransit,
			PlacementStrategies: t.PlacementStrategies,
		}
		if t.SustainedClockSpeedMHz > 0 {
			it.SustainedClockGHz = strconv.FormatFloat(float64(t.SustainedClockSpeedMHz)/1000, 'f', -1, 64)
		}
		var classes []string
		if s.onDemandPrice(t) > 0 {
			classes = append(classes, "on-demand", "spot")
		}
		it.SupportedUsageClasses = stringItems{Items: classes}
		if t.GPU != nil {
			it.GPUs = []gpuXML{{Name: t.GPU.Name, Manufacturer: t.GPU.Manufacturer, Count: t.GPU.Count, MemorySize: t.GPU.MemoryMiB}}
		}
		if a := t.Accelerator; a != nil && a.Manufacturer == "aws" {
			// EC2 names them as AWS brands them: Inferentia2, Trainium.
			name := strings.ToUpper(a.Name[:1]) + a.Name[1:]
			it.NeuronDevices = []neuronXML{{Name: name, Count: a.Count, MemorySize: a.MemoryMiB / max(a.Count, 1),
				Cores: a.CoresPerDevice, CoreVersion: a.CoreVersion}}
			it.NeuronMemoryMiB = a.MemoryMiB
		}
		items = append(items, it)
	}
	pageItems, next, apiErr := page(items, p, 100)
	if apiErr != nil {
		return nil, apiErr
	}
	return &describeInstanceTypesResponse{Xmlns: xmlns, Types: pageItems, NextToken: next}, nil
}

func manufacturerName(m string) string {
	switch m {
	case "intel":
		return "Intel"
	case "amd":
		return "AMD"
	case "aws":
		return "AWS"
	default:
		return m
	}
}

func (s *Server) describeInstanceTypeOfferings(p *params) (any, *apiError) {
	locType := p.get("LocationType")
	if locType == "" {
		locType = "region"
	}
	if locType != "availability-zone" && locType != "region" {
		return nil, invalidParameter("LocationType %q is not simulated; use availability-zone or region", locType)
	}
	filters, apiErr := p.filters(false, "instance-type", "location")
	if apiErr != nil {
		return nil, apiErr
	}
	var items []offeringXML
	for _, n := range s.typeNames {
		t := s.types[n]
		if s.onDemandPrice(t) <= 0 {
			continue
		}
		if !filters.match("instance-type", n) {
			continue
		}
		locations := []string{s.cfg.Region}
		if locType == "availability-zone" {
			locations = s.cfg.Zones
		}
		for _, loc := range locations {
			if !filters.match("location", loc) {
				continue
			}
			items = append(items, offeringXML{InstanceType: n, LocationType: locType, Location: loc})
		}
	}
	pageItems, next, apiErr := page(items, p, 1000)
	if apiErr != nil {
		return nil, apiErr
	}
	return &describeOfferingsResponse{Xmlns: xmlns, Offerings: pageItems, NextToken: next}, nil
}

func (s *Server) describeSpotPriceHistory(p *params) (any, *apiError) {
	names := p.strings("InstanceType")
	if len(names) == 0 {
		names = s.typeNames
	}
	products := p.strings("ProductDescription")
	if len(products) > 0 && !contains(products, "Linux/UNIX") && !contains(products, "Linux/UNIX (Amazon VPC)") {
		return &describeSpotPricesResponse{Xmlns: xmlns}, nil
	}
	filters, apiErr := p.filters(false, "availability-zone")
	if apiErr != nil {
		return nil, apiErr
	}
	now := s.clock.Now().UTC().Format(time.RFC3339)
	var items []spotPriceXML
	for _, n := range names {
		t, ok := s.types[n]
		if !ok || s.onDemandPrice(t) <= 0 {
			continue
		}
		for _, z := range s.cfg.Zones {
			if !filters.match("availability-zone", z) {
				continue
			}
			items = append(items, spotPriceXML{InstanceType: n, ProductDescription: "Linux/UNIX", SpotPrice: strconv.FormatFloat(s.spotPrice(t, z), 'f', 6, 64), Timestamp: now, AvailabilityZone: z})
		}
	}
	pageItems, next, apiErr := page(items, p, 1000)
	if apiErr != nil {
		return nil, apiErr
	}
	return &describeSpotPricesResponse{Xmlns: xmlns, Prices: pageItems, NextToken: next}, nil
}

// zoneIDs are this account's ids of its zones a, b, c...: as in EC2, where
// each account's zone names map to the ids in an order of their own, not the
// names' order, so code that mixes the two up fails here too.
var zoneIDs = []int{4, 6, 1, 2, 3, 5}

func zoneID(zone string) string {
	i := int(zone[len(zone)-1] - 'a')
	n := i + 1
	if i >= 0 && i < len(zoneIDs) {
		n = zoneIDs[i]
	}
	return regionCode(zone[:len(zone)-1]) + "-az" + strconv.Itoa(n)
}

// regionCode is the short form zone ids start with: us-east-1 is use1,
// ap-northeast-2 apne2, eu-central-1 euc1.
func regionCode(region string) string {
	parts := strings.Split(region, "-")
	if len(parts) != 3 {
		return region
	}
	dir := map[string]string{"north": "n", "south": "s", "east": "e", "west": "w", "central": "c",
		"northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw"}[parts[1]]
	if dir == "" {
		dir = parts[1][:1]
	}
	return parts[0] + dir + parts[2]
}

func (s *Server) describeSubnets(p *params) (any, *apiError) {
	ids := p.strings("SubnetId")
	filters, apiErr := p.filters(true, "subnet-id", "availability-zone")
	if apiErr != nil {
		return nil, apiErr
	}
	resp := &describeSubnetsResponse{Xmlns: xmlns}
	for _, id := range ids {
		if _, ok := s.subnetByID(id); !ok {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidSubnetID.NotFound", message: fmt.Sprintf("The subnet ID '%s' does not exist", id)}
		}
	}
	for _, sn := range s.cfg.Subnets {
		if len(ids) > 0 && !contains(ids, sn.ID) {
			continue
		}
		if !filters.match("subnet-id", sn.ID) {
			continue
		}
		if !filters.match("availability-zone", sn.Zone) {
			continue
		}
		if !matchesTags(sn.Tags, filters) {
			continue
		}
		resp.Subnets = append(resp.Subnets, subnetXML{SubnetID: sn.ID, State: "available", VpcID: "vpc-00000001", AvailabilityZone: sn.Zone,
			AvailabilityZoneID: zoneID(sn.Zone), AvailableIPs: sn.AvailableIPs, Tags: tagSet(sn.Tags)})
	}
	return resp, nil
}

func (s *Server) describeSecurityGroups(p *params) (any, *apiError) {
	ids, names := p.strings("GroupId"), p.strings("GroupName")
	filters, apiErr := p.filters(true, "group-id", "group-name")
	if apiErr != nil {
		return nil, apiErr
	}
	resp := &describeSecurityGroupsResponse{Xmlns: xmlns}
	for _, id := range ids {
		found := false
		for _, g := range s.cfg.SecurityGroups {
			found = found || g.ID == id
		}
		if !found {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidGroup.NotFound", message: fmt.Sprintf("The security group '%s' does not exist", id)}
		}
	}
	for _, g := range s.cfg.SecurityGroups {
		if len(ids) > 0 && !contains(ids, g.ID) || len(names) > 0 && !contains(names, g.Name) {
			continue
		}
		if !filters.match("group-id", g.ID) {
			continue
		}
		if !filters.match("group-name", g.Name) {
			continue
		}
		if !matchesTags(g.Tags, filters) {
			continue
		}
		resp.Groups = append(resp.Groups, securityGroupXML{GroupID: g.ID, GroupName: g.Name, VpcID: "vpc-00000001", Tags: tagSet(g.Tags)})
	}
	return resp, nil
}

func (s *Server) describeImages(p *params) (any, *apiError) {
	ids, owners := p.strings("ImageId"), p.strings("Owner")
	filters, apiErr := p.filters(true, "name", "architecture", "image-id")
	if apiErr != nil {
		return nil, apiErr
	}
	// As EC2: an image id that does not exist fails the whole request.
	for _, id := range ids {
		found := false
		for _, img := range s.cfg.Images {
			found = found || img.ID == id
		}
		if !found {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidAMIID.NotFound", message: fmt.Sprintf("The image id '[%s]' does not exist", id)}
		}
	}
	resp := &describeImagesResponse{Xmlns: xmlns}
	for _, img := range s.cfg.Images {
		if len(ids) > 0 && !contains(ids, img.ID) {
			continue
		}
		owner := img.Owner
		if owner == "" {
			owner = "self"
		}
		if len(owners) > 0 && !contains(owners, owner) {
			continue
		}
		if !filters.match("name", img.Name) {
			continue
		}
		if !filters.match("architecture", img.Architecture) {
			continue
		}
		if !filters.match("image-id", img.ID) {
			continue
		}
		if !matchesTags(img.Tags, filters) {
			continue
		}
		x := imageXML{ImageID: img.ID, Name: img.Name, State: "available", OwnerID: ownerID(owner), Architecture: img.Architecture, CreationDate: img.CreationDate, Tags: tagSet(img.Tags)}
		if img.Deprecated {
			x.DeprecationTime = img.CreationDate
		}
		resp.Images = append(resp.Images, x)
	}
	return resp, nil
}

func ownerID(owner string) string {
	if strings.EqualFold(owner, "amazon") {
		return "137112412989"
	}
	if owner == "self" {
		return "123456789012"
	}
	return owner
}

func (s *Server) describeAvailabilityZones(*params) (any, *apiError) {
	resp := &describeZonesResponse{Xmlns: xmlns}
	for _, z := range s.cfg.Zones {
		resp.Zones = append(resp.Zones, zoneXML{ZoneName: z, ZoneID: zoneID(z), ZoneState: "available", RegionName: s.cfg.Region, ZoneType: "availability-zone"})
	}
	return resp, nil
}

func (s *Server) createLaunchTemplate(p *params) (any, *apiError) {
	name := p.get("LaunchTemplateName")
	if name == "" {
		return nil, &apiError{status: http.StatusBadRequest, code: "MissingParameter", message: "The request must contain the parameter LaunchTemplateName"}
	}
	for _, t := range s.templates {
		if t.name == name {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidLaunchTemplateName.AlreadyExistsException", message: fmt.Sprintf("Launch template name already in use: %s", name)}
		}
	}
	imageID := p.get("LaunchTemplateData.ImageId")
	if imageID != "" {
		found := false
		for _, img := range s.cfg.Images {
			found = found || img.ID == imageID
		}
		if !found {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidAMIID.NotFound", message: fmt.Sprintf("The image id '[%s]' does not exist", imageID)}
		}
	}
	userData := ""
	if encoded := p.get("LaunchTemplateData.UserData"); encoded != "" {
		// As EC2: user data travels base64-encoded and holds 16 KB at most.
		raw, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidUserData.Malformed", message: "User data is not valid base64: " + err.Error()}
		}
		if len(raw) > 16*1024 {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidParameterValue", message: fmt.Sprintf("User data is limited to 16384 bytes; got %d", len(raw))}
		}
		userData = string(raw)
	}
	groups := p.strings("LaunchTemplateData.SecurityGroupId")
	if len(groups) == 0 {
		groups = p.strings("LaunchTemplateData.NetworkInterface.1.SecurityGroupId")
	}
	for _, id := range groups {
		known := false
		for _, g := range s.cfg.SecurityGroups {
			known = known || g.ID == id
		}
		if !known {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidGroup.NotFound", message: fmt.Sprintf("The security group '%s' does not exist", id)}
		}
	}
	if err := taggable(p, "launch-template"); err != nil {
		return nil, err
	}
	data := p.sub("LaunchTemplateData")
	if err := taggable(data, "instance", "volume", "network-interface", "spot-instances-request", "elastic-gpu"); err != nil {
		return nil, err
	}
	options, apiErr := launchOptions(data)
	if apiErr != nil {
		return nil, apiErr
	}
	reservation := ""
	crs := data.sub("CapacityReservationSpecification")
	switch pref := crs.get("CapacityReservationPreference"); pref {
	case "", "open", "none", "capacity-reservations-only":
	default:
		return nil, invalidParameter("Value (%s) for parameter capacityReservationPreference is invalid. Valid values: capacity-reservations-only, open, none", pref)
	}
	if id := crs.get("CapacityReservationTarget.CapacityReservationId"); id != "" {
		// EC2 takes a target only with the capacity-reservations-only preference.
		if pref := crs.get("CapacityReservationPreference"); pref != "" && pref != "capacity-reservations-only" {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidParameterCombination",
				message: "CapacityReservationTarget can be specified only with the capacity-reservations-only CapacityReservationPreference"}
		}
		reservation = id
	}
	placement := data.sub("Placement")
	pgID, pgName := placement.get("GroupId"), placement.get("GroupName")
	if pgID != "" && pgName != "" {
		return nil, &apiError{status: http.StatusBadRequest, code: "InvalidParameterCombination", message: "Placement.GroupId and Placement.GroupName cannot both be specified"}
	}
	partition := 0
	if n := placement.get("PartitionNumber"); n != "" {
		var err error
		if partition, err = strconv.Atoi(n); err != nil || partition < 1 {
			return nil, invalidParameter("Placement.PartitionNumber %q is not a positive number", n)
		}
		if pgID == "" && pgName == "" {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidParameterCombination", message: "Placement.PartitionNumber needs a placement group"}
		}
	}
	specs := map[string]map[string]string{}
	for _, rt := range []string{"instance", "volume", "network-interface", "spot-instances-request"} {
		specs[rt] = data.tags(rt)
	}
	lt := &launchTemplate{id: s.nextID("lt"), name: name, imageID: imageID, userData: userData, securityGroups: groups, created: s.clock.Now().UTC(),
		tags: p.tags("launch-template"), tagSpecs: specs, instanceProfile: data.get("IamInstanceProfile.Name"), options: options, reservation: reservation,
		reservationPreference: crs.get("CapacityReservationPreference"), placementGroupID: pgID, placementGroupName: pgName, partitionNumber: partition}
	if arn := data.get("IamInstanceProfile.Arn"); arn != "" && lt.instanceProfile == "" {
		lt.instanceProfile = arn[strings.LastIndex(arn, "/")+1:]
	}
	s.templates[lt.id] = lt
	return &launchTemplateResponse{XMLName: xmlName("CreateLaunchTemplateResponse"), Xmlns: xmlns, LaunchTemplate: templateXML(lt)}, nil
}

func templateXML(lt *launchTemplate) launchTemplateXML {
	return launchTemplateXML{LaunchTemplateID: lt.id, LaunchTemplateName: lt.name, CreateTime: lt.created.Format(time.RFC3339), DefaultVersionNumber: 1, LatestVersionNumber: 1, Tags: tagSet(lt.tags)}
}

func (s *Server) describeLaunchTemplates(p *params) (any, *apiError) {
	names, ids := p.strings("LaunchTemplateName"), p.strings("LaunchTemplateId")
	filters, apiErr := p.filters(true)
	if apiErr != nil {
		return nil, apiErr
	}
	var items []launchTemplateXML
	found := map[string]bool{}
	for _, id := range sortedTemplateIDs(s.templates) {
		lt := s.templates[id]
		if len(names) > 0 && !contains(names, lt.name) || len(ids) > 0 && !contains(ids, lt.id) {
			continue
		}
		if !matchesTags(lt.tags, filters) {
			continue
		}
		found[lt.name], found[lt.id] = true, true
		items = append(items, templateXML(lt))
	}
	for _, n := range append(names, ids...) {
		if !found[n] {
			return nil, &apiError{status: http.StatusBadRequest, code: "InvalidLaunchTemplateName.NotFoundException", message: "At least one of the launch templates specified in the request does not exist."}
		}
	}
	pageItems, next, apiErr := page(items, p, 100)
	if apiErr != nil {
		return nil, apiErr
	}
	return &describeLaunchTemplatesResponse{Xmlns: xmlns, Templates: pageItems, NextToken: next}, nil
}

func sortedTemplateIDs(m map[string]*launchTemplate) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

func (s *Server) deleteLaunchTemplate(p *params) (any, *apiError) {
	lt, apiErr := s.templateFrom(p)
	if apiErr != nil {
		return nil, apiErr
	}
	delete(s.templates, lt.id)
	return &launchTemplateResponse{XMLName: xmlName("DeleteLaunchTemplateResponse"), Xmlns: xmlns, LaunchTemplate: templateXML(lt)}, nil
}
