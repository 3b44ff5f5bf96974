package aws

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/smithy-go"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
)

// Scope is how much an EC2 error says is unavailable.
type Scope string

// Scopes of unavailability, from narrow to wide.
const (
	// ScopeOffering: one instance type in one zone for one capacity type.
	ScopeOffering Scope = "offering"
	// ScopeSubnet: one subnet has no free addresses.
	ScopeSubnet Scope = "subnet"
	// ScopeFamilyClass: a vCPU quota bucket (such as the standard A, C, D, H,
	// I, M, R, T, Z families) for one capacity type.
	ScopeFamilyClass Scope = "family-class"
	// ScopeCapacityType: a whole capacity type account-wide (all of Spot).
	ScopeCapacityType Scope = "capacity-type"
	// ScopePlacementZone: every type and capacity type in one zone, for
	// one placement group (a spread group's seven instances there).
	ScopePlacementZone Scope = "placement-group-zone"
)

// Unavailable is one thing an EC2 error marks unavailable.
type Unavailable struct {
	Scope        Scope
	CapacityType string
	InstanceType string
	Zone         string
	Subnet       string
	FamilyClass  string
	// PlacementGroup scopes an offering or zone mark to launches into one
	// placement group (its id): a group without room for a type says
	// nothing of the same type outside it.
	PlacementGroup string
	// Code is the EC2 error code that caused the mark.
	Code string
}

func (u Unavailable) String() string {
	switch u.Scope {
	case ScopeOffering:
		if u.PlacementGroup != "" {
			return fmt.Sprintf("%s %s in %s in placement group %s", u.CapacityType, u.InstanceType, u.Zone, u.PlacementGroup)
		}
		return fmt.Sprintf("%s %s in %s", u.CapacityType, u.InstanceType, u.Zone)
	case ScopePlacementZone:
		return fmt.Sprintf("placement group %s in %s", u.PlacementGroup, u.Zone)
	case ScopeSubnet:
		return "subnet " + u.Subnet
	case ScopeFamilyClass:
		return fmt.Sprintf("%s instances of the %s vCPU quota class", u.CapacityType, u.FamilyClass)
	default:
		return "all " + u.CapacityType + " capacity"
	}
}

// FleetError is one entry of a CreateFleet response's error list, or a whole
// request's error, with the override it was about.
type FleetError struct {
	Code         string
	Message      string
	InstanceType string
	Zone         string
	Subnet       string
	// Template is the launch template of the override, by name.
	Template string
}

// Outcome is what Backstop should do about a failed launch.
type Outcome string

// Outcomes of classification.
const (
	// OutcomeUnavailable: mark the scopes unavailable and plan again at once.
	OutcomeUnavailable Outcome = "Unavailable"
	// OutcomeRetry: a passing fault (throttling, 5xx); retry with jittered backoff, mark nothing.
	OutcomeRetry Outcome = "Retry"
	// OutcomeConfig: the NodeClass or account is misconfigured; report it and do not retry in a loop.
	OutcomeConfig Outcome = "Configuration"
	// OutcomeUnknown: an error Backstop has no rule for; the launch fails with it.
	OutcomeUnknown Outcome = "Unknown"
)

// Classification is the result of Classify.
type Classification struct {
	Outcome     Outcome
	Unavailable []Unavailable
	// Reason is a short CamelCase reason for conditions, events and metrics.
	Reason string
	// Message says what happened and, when known, how to fix it.
	Message string
}

// The service-linked role Spot needs, and how to create it.
const SpotServiceLinkedRoleFix = "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com"

var capacityCodes = map[string]bool{
	"InsufficientInstanceCapacity": true,
	"UnfulfillableCapacity":        true,
	"InsufficientCapacity":         true,
	"Unsupported":                  true,
	// A targeted capacity reservation has no room left.
	"ReservationCapacityExceeded": true,
}

var retryCodes = map[string]bool{
	"RequestLimitExceeded": true, "Throttling": true, "ThrottlingException": true,
	"InternalError": true, "InternalFailure": true, "ServiceUnavailable": true, "Unavailable": true,
	"RequestTimeout": true, "RequestTimeoutException": true,
}

var configCodes = map[string]string{
	"InvalidAMIID.NotFound":                       "the EC2NodeClass's AMI does not exist or is not shared with this account; check spec.amiSelectorTerms",
	"InvalidAMIID.Malformed":                      "the EC2NodeClass's AMI id is malformed; check spec.amiSelectorTerms",
	"InvalidGroup.NotFound":                       "a security group of the EC2NodeClass does not exist; check spec.securityGroupSelectorTerms",
	"InvalidSubnetID.NotFound":                    "a subnet of the EC2NodeClass does not exist; check spec.subnetSelectorTerms",
	"InvalidParameterValue":                       "EC2 rejected a launch parameter; check the EC2NodeClass",
	"InvalidParameterCombination":                 "EC2 rejected a combination of launch parameters; check the EC2NodeClass's block devices and metadata options",
	"InvalidLaunchTemplateName.NotFoundException": "the launch template disappeared; Backstop recreates it",
	"InvalidLaunchTemplateId.NotFound":            "the launch template disappeared; Backstop recreates it",
	"UnauthorizedOperation":                       "the controller's IAM role may not launch instances; grant it ec2:CreateFleet, ec2:RunInstances and ec2:CreateTags on what a launch makes and uses, with the conditions of charts/backstop/iam/controller-policy.json, and iam:PassRole on the node role",
	"AuthFailure":                                 "AWS rejected the controller's credentials; check its IAM role",
	"InvalidInstanceProfile":                      "the EC2NodeClass's instance profile does not exist; check spec.role or spec.instanceProfile",
	"InvalidParameter":                            "EC2 rejected a launch parameter; check the EC2NodeClass",
}

// InstanceProfileNotPropagated is the reason of a launch EC2 refused because
// IAM has not yet made the instance profile visible to it.
const InstanceProfileNotPropagated = "InstanceProfileNotPropagated"

const notPropagatedMessage = InstanceProfileNotPropagated + ": EC2 does not see the EC2NodeClass's instance profile yet; IAM takes seconds to make a new instance profile or role visible; retrying. If it lasts, check that status.instanceProfile exists and holds spec.role"

// Classify decides what a failed launch of one capacity type means. Errors are
// classified one by one; a fleet that mixes codes yields every mark they imply,
// and the widest outcome wins: capacity marks make the next solve move on,
// a configuration error stops retries, throttling alone asks for a retry.
func Classify(capacityType string, errs []FleetError) Classification {
	return ClassifyPlaced(capacityType, errs, "")
}

// ClassifyPlaced is Classify for a launch into a placement group (its id;
// "" for none): capacity marks are the group's own, and a spread group's
// limit of seven instances in a zone marks the zone for the group.
func ClassifyPlaced(capacityType string, errs []FleetError, placementGroup string) Classification {
	var out Classification
	var config, retry, unknown []string
	// said is what EC2 said of the first configuration error: which
	// resource or parameter it refused.
	said := ""
	propagating := false
	seen := map[Unavailable]bool{}
	mark := func(u Unavailable) {
		if !seen[u] {
			seen[u] = true
			out.Unavailable = append(out.Unavailable, u)
		}
	}
	reasons := map[string]bool{}
	for _, e := range errs {
		switch {
		case capacityCodes[e.Code] && placementGroup != "" && strings.Contains(e.Message, "spread placement group"):
			mark(Unavailable{Scope: ScopePlacementZone, PlacementGroup: placementGroup, Zone: e.Zone, Code: e.Code})
			reasons[e.Code] = true
		case capacityCodes[e.Code]:
			mark(Unavailable{Scope: ScopeOffering, CapacityType: capacityType, InstanceType: e.InstanceType, Zone: e.Zone, PlacementGroup: placementGroup, Code: e.Code})
			reasons[e.Code] = true
		case e.Code == "InsufficientFreeAddressesInSubnet":
			mark(Unavailable{Scope: ScopeSubnet, Subnet: e.Subnet, Code: e.Code})
			reasons[e.Code] = true
		case e.Code == "MaxSpotInstanceCountExceeded":
			mark(Unavailable{Scope: ScopeCapacityType, CapacityType: v1.CapacityTypeSpot, Code: e.Code})
			reasons[e.Code] = true
		case e.Code == "AuthFailure.ServiceLinkedRoleCreationNotPermitted":
			mark(Unavailable{Scope: ScopeCapacityType, CapacityType: v1.CapacityTypeSpot, Code: e.Code})
			reasons[e.Code] = true
		case e.Code == "VcpuLimitExceeded":
			mark(Unavailable{Scope: ScopeFamilyClass, CapacityType: capacityType, FamilyClass: FamilyClass(e.InstanceType), Code: e.Code})
			reasons[e.Code] = true
		case e.Code == "InvalidParameterValue" && strings.Contains(e.Message, "iamInstanceProfile"):
			// IAM is eventually consistent: a profile made or given its
			// role seconds ago is not yet seen by EC2.
			propagating = true
		case retryCodes[e.Code] || strings.HasPrefix(e.Code, "Server."):
			retry = append(retry, e.Code)
		case configCodes[e.Code] != "":
			if len(config) == 0 {
				said = e.Message
			}
			config = append(config, e.Code)
		default:
			unknown = append(unknown, e.Code+": "+e.Message)
		}
	}
	switch {
	case len(config) > 0:
		out.Outcome, out.Reason = OutcomeConfig, config[0]
		out.Message = fmt.Sprintf("%s: %s", config[0], configCodes[config[0]])
		if said != "" {
			out.Message += " (EC2: " + said + ")"
		}
	case len(out.Unavailable) > 0:
		out.Outcome = OutcomeUnavailable
		codes := sortedKeys(reasons)
		out.Reason = codes[0]
		out.Message = unavailableMessage(capacityType, codes, out.Unavailable)
	case propagating:
		out.Outcome, out.Reason = OutcomeRetry, InstanceProfileNotPropagated
		out.Message = notPropagatedMessage
	case len(retry) > 0:
		out.Outcome, out.Reason = OutcomeRetry, retry[0]
		out.Message = retry[0] + ": EC2 is throttling or failing transiently; retrying with backoff"
	case len(unknown) > 0:
		out.Outcome, out.Reason = OutcomeUnknown, "LaunchFailed"
		out.Message = "EC2 could not launch the instance: " + strings.Join(unknown, "; ")
	default:
		out.Outcome, out.Reason = OutcomeUnknown, "NoInstance"
		out.Message = "EC2 returned no instance and no error"
	}
	return out
}

func unavailableMessage(capacityType string, codes []string, marks []Unavailable) string {
	for _, c := range codes {
		switch c {
		case "AuthFailure.ServiceLinkedRoleCreationNotPermitted":
			return "Spot is unavailable: the account has no service-linked role for EC2 Spot and the controller may not create it; run `" + SpotServiceLinkedRoleFix + "` once"
		case "MaxSpotInstanceCountExceeded":
			return "Spot is unavailable account-wide: the Spot vCPU quota is used up (MaxSpotInstanceCountExceeded); request a higher quota for Spot instances"
		case "VcpuLimitExceeded":
			return fmt.Sprintf("%s is unavailable for the %s vCPU quota class: the quota is used up (VcpuLimitExceeded); request a higher quota", capacityType, marks[0].FamilyClass)
		}
	}
	parts := make([]string, 0, len(marks))
	for i, m := range marks {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(marks)-5))
			break
		}
		parts = append(parts, m.String())
	}
	return fmt.Sprintf("%s: no capacity for %s", strings.Join(codes, ", "), strings.Join(parts, ", "))
}

// FromAPIError turns an SDK error for a whole request into a FleetError.
func FromAPIError(err error) (FleetError, bool) {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return FleetError{}, false
	}
	return FleetError{Code: apiErr.ErrorCode(), Message: apiErr.ErrorMessage()}, true
}

// causeOf keeps what EC2 said of a failed request: its error code and request id.
func causeOf(err error) cloudprovider.Cause {
	c := cloudprovider.Cause{Err: err}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		c.Code = apiErr.ErrorCode()
	}
	var withID interface{ ServiceRequestID() string }
	if errors.As(err, &withID) {
		c.RequestID = withID.ServiceRequestID()
	}
	return c
}

// retryable wraps a failed call that is worth trying again: throttling, 5xx,
// or no answer at all.
func retryable(operation string, err error) *cloudprovider.RetryableError {
	return &cloudprovider.RetryableError{Cause: causeOf(err), Operation: operation}
}

// FamilyClass is the on-demand vCPU quota bucket of an instance type.
func FamilyClass(instanceType string) string {
	family := strings.SplitN(instanceType, ".", 2)[0]
	switch {
	case family == "":
		return "standard"
	case strings.HasPrefix(family, "u-") || strings.HasPrefix(family, "u7"):
		return "high-memory"
	case strings.HasPrefix(family, "inf"):
		return "inf"
	case strings.HasPrefix(family, "trn"):
		return "trn"
	case strings.HasPrefix(family, "dl"):
		return "dl"
	case strings.HasPrefix(family, "hpc"):
		return "hpc"
	case strings.HasPrefix(family, "vt"), strings.HasPrefix(family, "g"):
		return "g-vt"
	}
	switch family[0] {
	case 'f':
		return "f"
	case 'p':
		return "p"
	case 'x':
		return "x"
	default:
		return "standard"
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Retryable wraps a failed AWS call worth trying again, keeping its error
// code and request id; for callers outside this package, such as the
// interruption queue.
func Retryable(operation string, err error) *cloudprovider.RetryableError {
	return retryable(operation, err)
}
