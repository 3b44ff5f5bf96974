package aws

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
)

// Resolver turns an EC2NodeClass's selector terms into concrete subnets,
// security groups and images.
type Resolver struct {
	ec2               *ec2.Client
	ssm               *ssm.Client
	profiles          *InstanceProfiles
	clusterName       string
	kubernetesVersion string
	// Clock dates deprecations and ages cached parameters; real by default.
	Clock clock.Clock
	// Reservations receives the room EC2 describes in each capacity
	// reservation the classes select; nil keeps no count.
	Reservations *Reservations
	// ParameterTTL is how long an SSM parameter's value is kept: classes
	// sharing an alias read it once per TTL, and a new release is seen
	// within it.
	ParameterTTL time.Duration

	mu     sync.Mutex
	params map[string]cachedParameter
}

type cachedParameter struct {
	value   string
	fetched time.Time
}

// DefaultParameterTTL is how long SSM parameters are cached by default.
const DefaultParameterTTL = 5 * time.Minute

// NewResolver returns a resolver; aliases and ssmParameter terms are read
// from SSM, kubernetesVersion ("1.36") picks the alias parameters, and
// instance profiles are made through profiles.
func NewResolver(client *ec2.Client, ssmClient *ssm.Client, profiles *InstanceProfiles, clusterName, kubernetesVersion string) *Resolver {
	return &Resolver{ec2: client, ssm: ssmClient, profiles: profiles, clusterName: clusterName, kubernetesVersion: kubernetesVersion,
		Clock: clock.RealClock{}, ParameterTTL: DefaultParameterTTL, params: map[string]cachedParameter{}}
}

// Resolve computes the class's status: what each selector matched and a
// condition per part, with Ready true only when all resolved. An error is
// returned only when EC2 could not be asked; matching nothing is a condition.
func (r *Resolver) Resolve(ctx context.Context, nc *awsv1.EC2NodeClass) (awsv1.EC2NodeClassStatus, error) {
	var status awsv1.EC2NodeClassStatus
	var err error
	if status.Subnets, err = r.subnets(ctx, nc.Spec.SubnetSelectorTerms); err != nil {
		return status, err
	}
	if status.SecurityGroups, err = r.securityGroups(ctx, nc.Spec.SecurityGroupSelectorTerms); err != nil {
		return status, err
	}
	var amiNotes []string
	if status.AMIs, amiNotes, err = r.amis(ctx, nc.Spec.AMISelectorTerms); err != nil {
		return status, err
	}
	var reservationNotes []string
	if status.CapacityReservations, reservationNotes, err = r.reservations(ctx, nc.Spec.CapacityReservationSelectorTerms); err != nil {
		return status, err
	}
	var placementProblem string
	if status.PlacementGroup, placementProblem, err = r.placementGroup(ctx, nc.Spec.PlacementGroupSelector); err != nil {
		return status, err
	}
	var profileProblem string
	if status.InstanceProfile, profileProblem, err = r.profiles.Ensure(ctx, nc); err != nil {
		return status, err
	}

	conds := []metav1.Condition{
		condition(awsv1.ConditionSubnetsReady, len(status.Subnets) > 0, "SubnetsNotFound",
			"no subnet matched spec.subnetSelectorTerms "+describeTerms(nc.Spec.SubnetSelectorTerms)),
		condition(awsv1.ConditionSecurityGroupsReady, len(status.SecurityGroups) > 0, "SecurityGroupsNotFound",
			"no security group matched spec.securityGroupSelectorTerms "+describeTerms(nc.Spec.SecurityGroupSelectorTerms)),
		condition(awsv1.ConditionAMIsReady, len(status.AMIs) > 0, "AMIsNotFound",
			"no image matched spec.amiSelectorTerms "+describeTerms(nc.Spec.AMISelectorTerms)+notes(amiNotes)),
		condition(awsv1.ConditionInstanceProfileReady, profileProblem == "", "InstanceProfileNotReady", profileProblem),
		condition(awsv1.ConditionPlacementGroupReady, placementProblem == "", "PlacementGroupNotFound", placementProblem),
	}
	// Reservations are optional capacity: matching none leaves the class
	// Ready, to launch Spot and On-Demand; what was not found is said.
	reservations := condition(awsv1.ConditionCapacityReservationsReady, true, "", "")
	reservations.Message = strings.Join(reservationNotes, "; ")
	conds = append(conds, reservations)
	ignored := unsupported(nc)
	conds = append(conds, condition(awsv1.ConditionValidationSucceeded, len(ignored) == 0, "UnsupportedField", strings.Join(ignored, "; ")))
	var notReady []string
	for _, c := range conds {
		if c.Status != metav1.ConditionTrue {
			notReady = append(notReady, c.Message)
		}
	}
	conds = append(conds, condition(awsv1.ConditionReady, len(notReady) == 0, "NotReady", strings.Join(notReady, "; ")),
		deprecationCondition(status.AMIs))
	for _, c := range conds {
		c.ObservedGeneration = nc.Generation
		status.Conditions = append(status.Conditions, c)
	}
	return status, nil
}

// unsupported says which of a class's fields Backstop accepts (so Karpenter
// manifests apply unchanged) but does not act on. Launching without them
// would give the user something other than what the class asks for, so such
// a class is not Ready until they are removed.
func unsupported(nc *awsv1.EC2NodeClass) []string {
	var out []string
	if len(nc.Spec.NetworkInterfaces) > 0 {
		out = append(out, "spec.networkInterfaces: Backstop launches with one primary network interface and no EFA yet; remove the list to launch with the primary interface only")
	}
	return out
}

func notes(ns []string) string {
	if len(ns) == 0 {
		return ""
	}
	return ": " + strings.Join(ns, "; ")
}

func condition(kind string, ok bool, reason, message string) metav1.Condition {
	if ok {
		return metav1.Condition{Type: kind, Status: metav1.ConditionTrue, Reason: kind, Message: ""}
	}
	return metav1.Condition{Type: kind, Status: metav1.ConditionFalse, Reason: reason, Message: message}
}

func describeTerms[T any](terms []T) string {
	parts := make([]string, 0, len(terms))
	for _, t := range terms {
		parts = append(parts, strings.TrimPrefix(fmt.Sprintf("%+v", t), "&"))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// tagFilters turns selector tags into EC2 filters; "*" matches any value.
func tagFilters(tags map[string]string) []ec2types.Filter {
	var out []ec2types.Filter
	for _, k := range sortedStringKeys(tags) {
		if tags[k] == "*" {
			out = append(out, ec2types.Filter{Name: aws.String("tag-key"), Values: []string{k}})
		} else {
			out = append(out, ec2types.Filter{Name: aws.String("tag:" + k), Values: []string{tags[k]}})
		}
	}
	return out
}

func sortedStringKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (r *Resolver) subnets(ctx context.Context, terms []awsv1.SubnetSelectorTerm) ([]awsv1.Subnet, error) {
	found := map[string]ec2types.Subnet{}
	for _, t := range terms {
		in := &ec2.DescribeSubnetsInput{Filters: tagFilters(t.Tags)}
		if t.ID != "" {
			in = &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("subnet-id"), Values: []string{t.ID}}}}
		}
		out, err := r.ec2.DescribeSubnets(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("DescribeSubnets: %w", err)
		}
		for _, s := range out.Subnets {
			found[aws.ToString(s.SubnetId)] = s
		}
	}
	subnets := make([]ec2types.Subnet, 0, len(found))
	for _, s := range found {
		subnets = append(subnets, s)
	}
	// Most free addresses first: the launcher uses the first subnet of each zone.
	sort.Slice(subnets, func(i, j int) bool {
		a, b := subnets[i], subnets[j]
		if aws.ToString(a.AvailabilityZone) != aws.ToString(b.AvailabilityZone) {
			return aws.ToString(a.AvailabilityZone) < aws.ToString(b.AvailabilityZone)
		}
		if aws.ToInt32(a.AvailableIpAddressCount) != aws.ToInt32(b.AvailableIpAddressCount) {
			return aws.ToInt32(a.AvailableIpAddressCount) > aws.ToInt32(b.AvailableIpAddressCount)
		}
		return aws.ToString(a.SubnetId) < aws.ToString(b.SubnetId)
	})
	out := make([]awsv1.Subnet, 0, len(subnets))
	for _, s := range subnets {
		out = append(out, awsv1.Subnet{ID: aws.ToString(s.SubnetId), Zone: aws.ToString(s.AvailabilityZone), ZoneID: aws.ToString(s.AvailabilityZoneId)})
	}
	return out, nil
}

func (r *Resolver) securityGroups(ctx context.Context, terms []awsv1.SecurityGroupSelectorTerm) ([]awsv1.SecurityGroup, error) {
	found := map[string]string{}
	for _, t := range terms {
		in := &ec2.DescribeSecurityGroupsInput{Filters: tagFilters(t.Tags)}
		switch {
		case t.ID != "":
			in.Filters = []ec2types.Filter{{Name: aws.String("group-id"), Values: []string{t.ID}}}
		case t.Name != "":
			in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("group-name"), Values: []string{t.Name}})
		}
		out, err := r.ec2.DescribeSecurityGroups(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("DescribeSecurityGroups: %w", err)
		}
		for _, g := range out.SecurityGroups {
			found[aws.ToString(g.GroupId)] = aws.ToString(g.GroupName)
		}
	}
	out := make([]awsv1.SecurityGroup, 0, len(found))
	for _, id := range sortedStringKeys(found) {
		out = append(out, awsv1.SecurityGroup{ID: id, Name: found[id]})
	}
	return out, nil
}

// aliasImage is one public SSM parameter of an alias: the image of one
// architecture ("x86_64", "arm64") and variant ("standard", "nvidia",
// "neuron") of the family.
type aliasImage struct {
	param, arch, variant string
}

// aliasParameters are the public SSM parameters AWS publishes for an
// alias's images: "latest" reads the recommended image, a version
// (al2023@v20250101, bottlerocket@v1.26.0) the pinned one. Each family has a
// standard image per architecture and accelerated ones: AL2023 for NVIDIA
// (both architectures) and Neuron (x86_64), AL2 one GPU image for both,
// Bottlerocket an NVIDIA one per architecture.
func (r *Resolver) aliasParameters(family, version string) ([]aliasImage, error) {
	k := r.kubernetesVersion
	latest := version == "latest" || version == ""
	v := strings.TrimPrefix(version, "v")
	switch family {
	case "al2023":
		var out []aliasImage
		for _, av := range [][2]string{{"x86_64", "standard"}, {"x86_64", "nvidia"}, {"x86_64", "neuron"}, {"arm64", "standard"}, {"arm64", "nvidia"}} {
			arch, variant := av[0], av[1]
			leaf := "recommended"
			if !latest {
				leaf = fmt.Sprintf("amazon-eks-node-al2023-%s-%s-%s-v%s", arch, variant, k, v)
			}
			out = append(out, aliasImage{fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2023/%s/%s/%s/image_id", k, arch, variant, leaf), arch, variant})
		}
		return out, nil
	case "al2":
		leaf := func(prefix string) string {
			if latest {
				return "recommended"
			}
			return fmt.Sprintf("amazon-eks-%snode-%s-v%s", prefix, k, v)
		}
		gpu := fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2-gpu/%s/image_id", k, leaf("gpu-"))
		return []aliasImage{
			{fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2/%s/image_id", k, leaf("")), "x86_64", "standard"},
			{gpu, "x86_64", "nvidia"},
			{gpu, "x86_64", "neuron"},
			{fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2-arm64/%s/image_id", k, leaf("arm64-")), "arm64", "standard"},
		}, nil
	case "bottlerocket":
		leaf := "latest"
		if !latest {
			leaf = v
		}
		var out []aliasImage
		for _, arch := range []string{"x86_64", "arm64"} {
			out = append(out, aliasImage{fmt.Sprintf("/aws/service/bottlerocket/aws-k8s-%s/%s/%s/image_id", k, arch, leaf), arch, "standard"},
				aliasImage{fmt.Sprintf("/aws/service/bottlerocket/aws-k8s-%s-nvidia/%s/%s/image_id", k, arch, leaf), arch, "nvidia"})
		}
		return out, nil
	case "windows2019", "windows2022":
		if !latest {
			return nil, fmt.Errorf("alias %s@%s: Windows images cannot be pinned; use %s@latest", family, version, family)
		}
		return []aliasImage{{fmt.Sprintf("/aws/service/ami-windows-latest/Windows_Server-%s-English-Core-EKS_Optimized-%s/image_id", strings.TrimPrefix(family, "windows"), k), "x86_64", "standard"}}, nil
	}
	return nil, fmt.Errorf("alias %s@%s: unknown family; use al2023, al2, bottlerocket, windows2019 or windows2022", family, version)
}

// imageRequirements are what an instance type must meet to boot an image
// of the architecture and variant: the standard image goes to types
// without GPUs or accelerators, the NVIDIA one to NVIDIA GPU types, the
// Neuron one to AWS's accelerator types.
func imageRequirements(arch, variant string) []awsv1.AMIRequirement {
	k8sArch := map[string]string{"x86_64": "amd64", "arm64": "arm64"}[arch]
	reqs := []awsv1.AMIRequirement{{Key: corev1.LabelArchStable, Operator: string(v1.OpIn), Values: []string{k8sArch}}}
	switch variant {
	case "standard":
		reqs = append(reqs, awsv1.AMIRequirement{Key: LabelInstanceGPUCount, Operator: string(v1.OpDoesNotExist)},
			awsv1.AMIRequirement{Key: LabelInstanceAcceleratorCount, Operator: string(v1.OpDoesNotExist)})
	case "nvidia":
		reqs = append(reqs, awsv1.AMIRequirement{Key: LabelInstanceGPUManufacturer, Operator: string(v1.OpIn), Values: []string{"nvidia"}})
	case "neuron":
		reqs = append(reqs, awsv1.AMIRequirement{Key: LabelInstanceAcceleratorManufacturer, Operator: string(v1.OpIn), Values: []string{"aws"}})
	}
	return reqs
}

// ssmAccessFix is what a denied SSM read needs.
const ssmAccessFix = "allow ssm:GetParameter on arn:aws:ssm:<region>::parameter/aws/service/* (and on the parameters spec.amiSelectorTerms names); the shipped controller policy grants the former"

// parameters reads SSM parameters one by one with GetParameter, the one
// read Karpenter's published controller policy grants (a migrating user's
// role may allow nothing else); a missing one is left out and noted, a
// denied read is noted with the fix.
func (r *Resolver) parameters(ctx context.Context, names []string) (map[string]string, []string, error) {
	values := map[string]string{}
	var notes []string
	for _, name := range names {
		r.mu.Lock()
		cached, ok := r.params[name]
		r.mu.Unlock()
		if ok && r.Clock.Since(cached.fetched) < r.ParameterTTL {
			if cached.value == "" {
				notes = append(notes, fmt.Sprintf("SSM parameter %s does not exist", name))
			} else {
				values[name] = cached.value
			}
			continue
		}
		out, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name)})
		if err != nil {
			fe, ok := FromAPIError(err)
			switch {
			case ok && fe.Code == "AccessDeniedException":
				return values, append(notes, fmt.Sprintf("reading SSM parameter %s was denied (%s): %s", name, fe.Message, ssmAccessFix)), nil
			case ok && fe.Code == "ParameterNotFound":
				// Kept as missing for the TTL too: an accelerated variant a
				// family lacks is not asked for on every resolution.
				notes = append(notes, fmt.Sprintf("SSM parameter %s does not exist", name))
				r.mu.Lock()
				r.params[name] = cachedParameter{fetched: r.Clock.Now()}
				r.mu.Unlock()
				continue
			}
			return nil, nil, fmt.Errorf("SSM GetParameter %s: %w", name, err)
		}
		values[name] = aws.ToString(out.Parameter.Value)
		r.mu.Lock()
		r.params[name] = cachedParameter{value: values[name], fetched: r.Clock.Now()}
		r.mu.Unlock()
	}
	return values, notes, nil
}

// amis resolves the terms: an alias to its family's image per
// architecture and variant, each with the requirements a type must meet to
// boot it; other terms to the newest image of each architecture. Notes say
// what could not be found, for the AMIsReady condition.
func (r *Resolver) amis(ctx context.Context, terms []awsv1.AMISelectorTerm) ([]awsv1.AMI, []string, error) {
	var queries []*ec2.DescribeImagesInput
	var notes, ssmNames, plainParams []string
	var aliased []aliasImage
	for i, t := range terms {
		switch {
		case t.SSMParameter != "":
			ssmNames = append(ssmNames, t.SSMParameter)
			plainParams = append(plainParams, t.SSMParameter)
		case t.Alias != "":
			family, version, _ := strings.Cut(t.Alias, "@")
			images, err := r.aliasParameters(family, version)
			if err != nil {
				notes = append(notes, fmt.Sprintf("spec.amiSelectorTerms[%d].%s", i, err))
				continue
			}
			aliased = append(aliased, images...)
			for _, img := range images {
				if !slices.Contains(ssmNames, img.param) {
					ssmNames = append(ssmNames, img.param)
				}
			}
		default:
			in := &ec2.DescribeImagesInput{Filters: tagFilters(t.Tags)}
			if t.ID != "" {
				in.ImageIds = []string{t.ID}
			}
			if t.Name != "" {
				in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("name"), Values: []string{t.Name}})
			}
			if t.Owner != "" {
				in.Owners = []string{t.Owner}
			}
			queries = append(queries, in)
		}
	}
	values := map[string]string{}
	if len(ssmNames) > 0 {
		var ssmNotes []string
		var err error
		if values, ssmNotes, err = r.parameters(ctx, ssmNames); err != nil {
			return nil, nil, err
		}
		notes = append(notes, ssmNotes...)
		var ids []string
		for _, name := range plainParams {
			if id := values[name]; id != "" {
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			queries = append(queries, &ec2.DescribeImagesInput{ImageIds: ids})
		}
	}
	// The newest image of each architecture wins; one not deprecated before
	// any deprecated one.
	newest := map[string]ec2types.Image{}
	for _, q := range queries {
		out, err := r.ec2.DescribeImages(ctx, q)
		if err != nil {
			return nil, nil, fmt.Errorf("DescribeImages: %w", err)
		}
		for _, img := range out.Images {
			arch := string(img.Architecture)
			cur, ok := newest[arch]
			switch {
			case !ok:
				newest[arch] = img
			case r.deprecated(img) != r.deprecated(cur):
				if !r.deprecated(img) {
					newest[arch] = img
				}
			case aws.ToString(img.CreationDate) > aws.ToString(cur.CreationDate):
				newest[arch] = img
			}
		}
	}
	var out []awsv1.AMI
	// An alias's images, in its order; an image AWS names under a parameter
	// but EC2 does not have (or has for another architecture) is noted.
	if described, err := r.describeByID(ctx, aliased, values); err != nil {
		return nil, nil, err
	} else {
		for _, a := range aliased {
			img, ok := described[values[a.param]]
			switch {
			case values[a.param] == "":
				continue
			case !ok:
				notes = append(notes, fmt.Sprintf("SSM parameter %s names image %s, which EC2 does not have", a.param, values[a.param]))
				continue
			case string(img.Architecture) != a.arch:
				notes = append(notes, fmt.Sprintf("SSM parameter %s names image %s, which is %s, not %s", a.param, values[a.param], img.Architecture, a.arch))
				continue
			}
			out = append(out, awsv1.AMI{ID: aws.ToString(img.ImageId), Name: aws.ToString(img.Name), Deprecated: r.deprecated(img),
				Requirements: imageRequirements(a.arch, a.variant)})
		}
	}
	for _, arch := range []string{"x86_64", "arm64"} {
		img, ok := newest[arch]
		if !ok {
			continue
		}
		out = append(out, awsv1.AMI{ID: aws.ToString(img.ImageId), Name: aws.ToString(img.Name), Deprecated: r.deprecated(img),
			Requirements: imageRequirements(arch, "")})
	}
	return out, notes, nil
}

// describeByID describes the images an alias's parameters name, by id.
func (r *Resolver) describeByID(ctx context.Context, aliased []aliasImage, values map[string]string) (map[string]ec2types.Image, error) {
	var ids []string
	for _, a := range aliased {
		if id := values[a.param]; id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	out := map[string]ec2types.Image{}
	if len(ids) == 0 {
		return out, nil
	}
	resp, err := r.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: ids})
	if fe, ok := FromAPIError(err); ok && fe.Code == "InvalidAMIID.NotFound" && len(ids) > 1 {
		// One of them is gone (a parameter may name a deregistered image):
		// EC2 fails the whole call, so ask for each alone.
		for _, id := range ids {
			one, err := r.describeByID(ctx, []aliasImage{{param: id}}, map[string]string{id: id})
			if err != nil {
				return nil, err
			}
			maps.Copy(out, one)
		}
		return out, nil
	}
	if fe, ok := FromAPIError(err); ok && fe.Code == "InvalidAMIID.NotFound" {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("DescribeImages: %w", err)
	}
	for _, img := range resp.Images {
		out[aws.ToString(img.ImageId)] = img
	}
	return out, nil
}

// Cleanup removes what Backstop made for a class that is going away: its
// instance profile and its launch templates.
func (r *Resolver) Cleanup(ctx context.Context, nc *awsv1.EC2NodeClass) error {
	if err := r.profiles.Delete(ctx, nc); err != nil {
		return err
	}
	pager := ec2.NewDescribeLaunchTemplatesPaginator(r.ec2, &ec2.DescribeLaunchTemplatesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + ClusterTag(r.clusterName)), Values: []string{"owned"}},
		{Name: aws.String("tag:" + TagNodeClass), Values: []string{nc.Name}},
	}})
	for pager.HasMorePages() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing launch templates of ec2nodeclass %s: %w", nc.Name, err)
		}
		for _, lt := range page.LaunchTemplates {
			_, err := r.ec2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: lt.LaunchTemplateId})
			if fe, ok := FromAPIError(err); err != nil && !(ok && strings.HasPrefix(fe.Code, "InvalidLaunchTemplate")) {
				return fmt.Errorf("deleting launch template %s: %w", aws.ToString(lt.LaunchTemplateName), err)
			}
		}
	}
	return nil
}

// deprecated reports whether the image's deprecation time has come; EC2
// also announces deprecations ahead.
func (r *Resolver) deprecated(img ec2types.Image) bool {
	at, err := time.Parse(time.RFC3339, aws.ToString(img.DeprecationTime))
	return err == nil && !at.After(r.Clock.Now())
}

// deprecationCondition warns of deprecated images in use.
func deprecationCondition(amis []awsv1.AMI) metav1.Condition {
	var names []string
	for _, a := range amis {
		if name := a.Name + " (" + a.ID + ")"; a.Deprecated && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return metav1.Condition{Type: awsv1.ConditionAMIsDeprecated, Status: metav1.ConditionFalse, Reason: "NoDeprecatedAMIs"}
	}
	return metav1.Condition{Type: awsv1.ConditionAMIsDeprecated, Status: metav1.ConditionTrue, Reason: "DeprecatedAMIs",
		Message: "spec.amiSelectorTerms select deprecated images, which AWS no longer updates: " + strings.Join(names, ", ") +
			"; select a newer release (an alias @latest, a later pinned version, or other terms)"}
}
