package ec2sim

import "encoding/xml"

// The EC2 query protocol answers in XML: lists are <xSet><item>…</item></xSet>
// and element names are lowerCamel. These types cover the fields Backstop reads.

const xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"

type tagXML struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type tagSetXML struct {
	Items []tagXML `xml:"item"`
}

func tagSet(tags map[string]string) *tagSetXML {
	if len(tags) == 0 {
		return nil
	}
	out := &tagSetXML{}
	for _, k := range sortedKeys(tags) {
		out.Items = append(out.Items, tagXML{Key: k, Value: tags[k]})
	}
	return out
}

type errorResponse struct {
	XMLName   xml.Name `xml:"Response"`
	Code      string   `xml:"Errors>Error>Code"`
	Message   string   `xml:"Errors>Error>Message"`
	RequestID string   `xml:"RequestID"`
}

type stringItems struct {
	Items []string `xml:"item"`
}

type launchTemplateSpecXML struct {
	LaunchTemplateID   string `xml:"launchTemplateId,omitempty"`
	LaunchTemplateName string `xml:"launchTemplateName,omitempty"`
	Version            string `xml:"version,omitempty"`
}

type overridesXML struct {
	InstanceType     string  `xml:"instanceType,omitempty"`
	SubnetID         string  `xml:"subnetId,omitempty"`
	AvailabilityZone string  `xml:"availabilityZone,omitempty"`
	Priority         float64 `xml:"priority,omitempty"`
}

type ltAndOverridesXML struct {
	LaunchTemplateSpecification launchTemplateSpecXML `xml:"launchTemplateSpecification"`
	Overrides                   overridesXML          `xml:"overrides"`
}

type fleetErrorXML struct {
	LaunchTemplateAndOverrides ltAndOverridesXML `xml:"launchTemplateAndOverrides"`
	Lifecycle                  string            `xml:"lifecycle"`
	ErrorCode                  string            `xml:"errorCode"`
	ErrorMessage               string            `xml:"errorMessage"`
}

type fleetInstanceXML struct {
	LaunchTemplateAndOverrides ltAndOverridesXML `xml:"launchTemplateAndOverrides"`
	Lifecycle                  string            `xml:"lifecycle"`
	InstanceIDs                stringItems       `xml:"instanceIds"`
	InstanceType               string            `xml:"instanceType"`
}

type createFleetResponse struct {
	XMLName        xml.Name           `xml:"CreateFleetResponse"`
	Xmlns          string             `xml:"xmlns,attr"`
	RequestID      string             `xml:"requestId"`
	FleetID        string             `xml:"fleetId"`
	Errors         []fleetErrorXML    `xml:"errorSet>item"`
	FleetInstances []fleetInstanceXML `xml:"fleetInstanceSet>item"`
}

type stateXML struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type placementXML struct {
	AvailabilityZone string `xml:"availabilityZone"`
	GroupName        string `xml:"groupName,omitempty"`
	GroupID          string `xml:"groupId,omitempty"`
	PartitionNumber  int    `xml:"partitionNumber,omitempty"`
}

type instanceXML struct {
	InstanceID        string       `xml:"instanceId"`
	ImageID           string       `xml:"imageId"`
	State             stateXML     `xml:"instanceState"`
	PrivateDNSName    string       `xml:"privateDnsName"`
	InstanceType      string       `xml:"instanceType"`
	LaunchTime        string       `xml:"launchTime"`
	Placement         placementXML `xml:"placement"`
	SubnetID          string       `xml:"subnetId"`
	PrivateIPAddress  string       `xml:"privateIpAddress"`
	Architecture      string       `xml:"architecture"`
	InstanceLifecycle string       `xml:"instanceLifecycle,omitempty"`
	// CapacityReservationID is the reservation the instance runs in.
	CapacityReservationID string     `xml:"capacityReservationId,omitempty"`
	SpotRequestID         string     `xml:"spotInstanceRequestId,omitempty"`
	ClientToken           string     `xml:"clientToken,omitempty"`
	Tags                  *tagSetXML `xml:"tagSet"`
	Groups                []groupXML `xml:"groupSet>item"`
}

type groupXML struct {
	GroupID string `xml:"groupId"`
}

type reservationXML struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []instanceXML `xml:"instancesSet>item"`
}

type describeInstancesResponse struct {
	XMLName      xml.Name         `xml:"DescribeInstancesResponse"`
	Xmlns        string           `xml:"xmlns,attr"`
	RequestID    string           `xml:"requestId"`
	Reservations []reservationXML `xml:"reservationSet>item"`
	NextToken    string           `xml:"nextToken,omitempty"`
}

type runInstancesResponse struct {
	XMLName       xml.Name      `xml:"RunInstancesResponse"`
	Xmlns         string        `xml:"xmlns,attr"`
	RequestID     string        `xml:"requestId"`
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []instanceXML `xml:"instancesSet>item"`
}

type stateChangeXML struct {
	InstanceID    string   `xml:"instanceId"`
	CurrentState  stateXML `xml:"currentState"`
	PreviousState stateXML `xml:"previousState"`
}

type terminateInstancesResponse struct {
	XMLName   xml.Name         `xml:"TerminateInstancesResponse"`
	Xmlns     string           `xml:"xmlns,attr"`
	RequestID string           `xml:"requestId"`
	Instances []stateChangeXML `xml:"instancesSet>item"`
}

type returnResponse struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
	Return    bool   `xml:"return"`
}

type gpuXML struct {
	Name         string `xml:"name"`
	Manufacturer string `xml:"manufacturer"`
	Count        int64  `xml:"count"`
	MemorySize   int64  `xml:"memoryInfo>sizeInMiB"`
}

// neuronXML is a type's Neuron (Inferentia, Trainium) devices, as EC2
// describes them in neuronInfo; the manufacturer, AWS, goes unsaid.
type neuronXML struct {
	Name       string `xml:"name"`
	Count      int64  `xml:"count"`
	MemorySize int64  `xml:"memoryInfo>sizeInMiB"`
	// Cores and CoreVersion are each device's NeuronCores (coreInfo).
	Cores       int64 `xml:"coreInfo>count"`
	CoreVersion int64 `xml:"coreInfo>version"`
}

type instanceTypeXML struct {
	InstanceType          string      `xml:"instanceType"`
	CurrentGeneration     bool        `xml:"currentGeneration"`
	SupportedUsageClasses stringItems `xml:"supportedUsageClasses"`
	BareMetal             bool        `xml:"bareMetal"`
	Hypervisor            string      `xml:"hypervisor,omitempty"`
	Architectures         stringItems `xml:"processorInfo>supportedArchitectures"`
	Manufacturer          string      `xml:"processorInfo>manufacturer"`
	Features              []string    `xml:"processorInfo>supportedFeatures>item,omitempty"`
	SustainedClockGHz     string      `xml:"processorInfo>sustainedClockSpeedInGhz,omitempty"`
	DefaultVCPUs          int64       `xml:"vCpuInfo>defaultVCpus"`
	MemoryMiB             int64       `xml:"memoryInfo>sizeInMiB"`
	MaxENIs               int64       `xml:"networkInfo>maximumNetworkInterfaces"`
	IPv4PerENI            int64       `xml:"networkInfo>ipv4AddressesPerInterface"`
	NetworkPerformance    string      `xml:"networkInfo>networkPerformance"`
	EncryptionInTransit   bool        `xml:"networkInfo>encryptionInTransitSupported"`
	GPUs                  []gpuXML    `xml:"gpuInfo>gpus>item,omitempty"`
	NeuronDevices         []neuronXML `xml:"neuronInfo>neuronDevices>item,omitempty"`
	NeuronMemoryMiB       int64       `xml:"neuronInfo>totalNeuronDeviceMemoryInMiB,omitempty"`
	LocalStorageGB        int64       `xml:"instanceStorageInfo>totalSizeInGB,omitempty"`
	EBSBandwidthMbps      int64       `xml:"ebsInfo>ebsOptimizedInfo>maximumBandwidthInMbps,omitempty"`
	Burstable             bool        `xml:"burstablePerformanceSupported"`
	PlacementStrategies   []string    `xml:"placementGroupInfo>supportedStrategies>item,omitempty"`
}

type describeInstanceTypesResponse struct {
	XMLName   xml.Name          `xml:"DescribeInstanceTypesResponse"`
	Xmlns     string            `xml:"xmlns,attr"`
	RequestID string            `xml:"requestId"`
	Types     []instanceTypeXML `xml:"instanceTypeSet>item"`
	NextToken string            `xml:"nextToken,omitempty"`
}

type offeringXML struct {
	InstanceType string `xml:"instanceType"`
	LocationType string `xml:"locationType"`
	Location     string `xml:"location"`
}

type describeOfferingsResponse struct {
	XMLName   xml.Name      `xml:"DescribeInstanceTypeOfferingsResponse"`
	Xmlns     string        `xml:"xmlns,attr"`
	RequestID string        `xml:"requestId"`
	Offerings []offeringXML `xml:"instanceTypeOfferingSet>item"`
	NextToken string        `xml:"nextToken,omitempty"`
}

type spotPriceXML struct {
	InstanceType       string `xml:"instanceType"`
	ProductDescription string `xml:"productDescription"`
	SpotPrice          string `xml:"spotPrice"`
	Timestamp          string `xml:"timestamp"`
	AvailabilityZone   string `xml:"availabilityZone"`
}

type describeSpotPricesResponse struct {
	XMLName   xml.Name       `xml:"DescribeSpotPriceHistoryResponse"`
	Xmlns     string         `xml:"xmlns,attr"`
	RequestID string         `xml:"requestId"`
	Prices    []spotPriceXML `xml:"spotPriceHistorySet>item"`
	NextToken string         `xml:"nextToken,omitempty"`
}

type subnetXML struct {
	SubnetID           string     `xml:"subnetId"`
	State              string     `xml:"state"`
	VpcID              string     `xml:"vpcId"`
	AvailabilityZone   string     `xml:"availabilityZone"`
	AvailabilityZoneID string     `xml:"availabilityZoneId"`
	AvailableIPs       int64      `xml:"availableIpAddressCount"`
	MapPublicIP        bool       `xml:"mapPublicIpOnLaunch"`
	Tags               *tagSetXML `xml:"tagSet"`
}

type describeSubnetsResponse struct {
	XMLName   xml.Name    `xml:"DescribeSubnetsResponse"`
	Xmlns     string      `xml:"xmlns,attr"`
	RequestID string      `xml:"requestId"`
	Subnets   []subnetXML `xml:"subnetSet>item"`
}

type securityGroupXML struct {
	GroupID   string     `xml:"groupId"`
	GroupName string     `xml:"groupName"`
	VpcID     string     `xml:"vpcId"`
	Tags      *tagSetXML `xml:"tagSet"`
}

type describeSecurityGroupsResponse struct {
	XMLName   xml.Name           `xml:"DescribeSecurityGroupsResponse"`
	Xmlns     string             `xml:"xmlns,attr"`
	RequestID string             `xml:"requestId"`
	Groups    []securityGroupXML `xml:"securityGroupInfo>item"`
}

type imageXML struct {
	ImageID         string     `xml:"imageId"`
	Name            string     `xml:"name"`
	State           string     `xml:"imageState"`
	OwnerID         string     `xml:"imageOwnerId"`
	Architecture    string     `xml:"architecture"`
	CreationDate    string     `xml:"creationDate"`
	DeprecationTime string     `xml:"deprecationTime,omitempty"`
	Tags            *tagSetXML `xml:"tagSet"`
}

type describeImagesResponse struct {
	XMLName   xml.Name   `xml:"DescribeImagesResponse"`
	Xmlns     string     `xml:"xmlns,attr"`
	RequestID string     `xml:"requestId"`
	Images    []imageXML `xml:"imagesSet>item"`
}

type zoneXML struct {
	ZoneName   string `xml:"zoneName"`
	ZoneID     string `xml:"zoneId"`
	ZoneState  string `xml:"zoneState"`
	RegionName string `xml:"regionName"`
	ZoneType   string `xml:"zoneType"`
}

type describeZonesResponse struct {
	XMLName   xml.Name  `xml:"DescribeAvailabilityZonesResponse"`
	Xmlns     string    `xml:"xmlns,attr"`
	RequestID string    `xml:"requestId"`
	Zones     []zoneXML `xml:"availabilityZoneInfo>item"`
}

type launchTemplateXML struct {
	LaunchTemplateID     string     `xml:"launchTemplateId"`
	LaunchTemplateName   string     `xml:"launchTemplateName"`
	CreateTime           string     `xml:"createTime"`
	DefaultVersionNumber int64      `xml:"defaultVersionNumber"`
	LatestVersionNumber  int64      `xml:"latestVersionNumber"`
	Tags                 *tagSetXML `xml:"tagSet"`
}

type launchTemplateResponse struct {
	XMLName        xml.Name
	Xmlns          string            `xml:"xmlns,attr"`
	RequestID      string            `xml:"requestId"`
	LaunchTemplate launchTemplateXML `xml:"launchTemplate"`
}

type describeLaunchTemplatesResponse struct {
	XMLName   xml.Name            `xml:"DescribeLaunchTemplatesResponse"`
	Xmlns     string              `xml:"xmlns,attr"`
	RequestID string              `xml:"requestId"`
	Templates []launchTemplateXML `xml:"launchTemplates>item"`
	NextToken string              `xml:"nextToken,omitempty"`
}
