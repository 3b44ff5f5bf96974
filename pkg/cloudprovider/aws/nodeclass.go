package aws

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
)

// Resolver turns an EC2NodeClass's selector terms into concrete subnets,
// security groups and images.
type Resolver struct {
	ec2               *ec2.Client
	ssm               *ssm.Client
	clusterName       string
	kubernetesVersion string
}

// NewResolver returns a resolver; aliases and ssmParameter terms are read
// from SSM, and kubernetesVersion ("1.36") picks the alias parameters.
func NewResolver(client *ec2.Client, ssmClient *ssm.Client, clusterName, kubernetesVersion string) *Resolver {
	return &Resolver{ec2: client, ssm: ssmClient, clusterName: clusterName, kubernetesVersion: kubernetesVersion}
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
	status.InstanceProfile = r.instanceProfile(nc)

	conds := []metav1.Condition{
		condition(awsv1.ConditionSubnetsReady, len(status.Subnets) > 0, "SubnetsNotFound",
			"no subnet matched spec.subnetSelectorTerms "+describeTerms(nc.Spec.SubnetSelectorTerms)),
		condition(awsv1.ConditionSecurityGroupsReady, len(status.SecurityGroups) > 0, "SecurityGroupsNotFound",
			"no security group matched spec.securityGroupSelectorTerms "+describeTerms(nc.Spec.SecurityGroupSelectorTerms)),
		condition(awsv1.ConditionAMIsReady, len(status.AMIs) > 0, "AMIsNotFound",
			"no image matched spec.amiSelectorTerms "+describeTerms(nc.Spec.AMISelectorTerms)+notes(amiNotes)),
		condition(awsv1.ConditionInstanceProfileReady, status.InstanceProfile != "", "InstanceProfileMissing", "set spec.role or spec.instanceProfile"),
	}
	var notReady []string
	for _, c := range conds {
		if c.Status != metav1.ConditionTrue {
			notReady = append(notReady, c.Message)
		}
	}
	conds = append(conds, condition(awsv1.ConditionReady, len(notReady) == 0, "NotReady", strings.Join(notReady, "; ")))
	for _, c := range conds {
		c.ObservedGeneration = nc.Generation
		status.Conditions = append(status.Conditions, c)
	}
	return status, nil
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

// aliasParameters are the public SSM parameters AWS publishes for an
// alias's images, by architecture: "latest" reads the recommended image,
// a version (al2023@v20250101, bottlerocket@v1.26.0) the pinned one.
func (r *Resolver) aliasParameters(family, version string) (map[string]string, error) {
	k := r.kubernetesVersion
	latest := version == "latest" || version == ""
	v := strings.TrimPrefix(version, "v")
	switch family {
	case "al2023":
		out := map[string]string{}
		for _, arch := range []string{"x86_64", "arm64"} {
			leaf := "recommended"
			if !latest {
				leaf = fmt.Sprintf("amazon-eks-node-al2023-%s-standard-%s-v%s", arch, k, v)
			}
			out[arch] = fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2023/%s/standard/%s/image_id", k, arch, leaf)
		}
		return out, nil
	case "al2":
		amd, arm := "recommended", "recommended"
		if !latest {
			amd, arm = fmt.Sprintf("amazon-eks-node-%s-v%s", k, v), fmt.Sprintf("amazon-eks-arm64-node-%s-v%s", k, v)
		}
		return map[string]string{
			"x86_64": fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2/%s/image_id", k, amd),
			"arm64":  fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2-arm64/%s/image_id", k, arm),
		}, nil
	case "bottlerocket":
		leaf := "latest"
		if !latest {
			leaf = v
		}
		return map[string]string{
			"x86_64": fmt.Sprintf("/aws/service/bottlerocket/aws-k8s-%s/x86_64/%s/image_id", k, leaf),
			"arm64":  fmt.Sprintf("/aws/service/bottlerocket/aws-k8s-%s/arm64/%s/image_id", k, leaf),
		}, nil
	case "windows2019", "windows2022":
		if !latest {
			return nil, fmt.Errorf("alias %s@%s: Windows images cannot be pinned; use %s@latest", family, version, family)
		}
		return map[string]string{"x86_64": fmt.Sprintf("/aws/service/ami-windows-latest/Windows_Server-%s-English-Core-EKS_Optimized-%s/image_id", strings.TrimPrefix(family, "windows"), k)}, nil
	}
	return nil, fmt.Errorf("alias %s@%s: unknown family; use al2023, al2, bottlerocket, windows2019 or windows2022", family, version)
}

// ssmAccessFix is what a denied SSM read needs.
const ssmAccessFix = "allow ssm:GetParameter and ssm:GetParameters on arn:aws:ssm:<region>::parameter/aws/service/* (and on the parameters spec.amiSelectorTerms names)"

// parameters reads SSM parameters, ten at a time; a missing one is left
// out and noted, a denied read is noted with the fix.
func (r *Resolver) parameters(ctx context.Context, names []string) (map[string]string, []string, error) {
	values := map[string]string{}
	var notes []string
	for start := 0; start < len(names); start += 10 {
		batch := names[start:min(start+10, len(names))]
		out, err := r.ssm.GetParameters(ctx, &ssm.GetParametersInput{Names: batch})
		if err != nil {
			if fe, ok := FromAPIError(err); ok && fe.Code == "AccessDeniedException" {
				return values, append(notes, fmt.Sprintf("reading SSM parameters was denied (%s): %s", fe.Message, ssmAccessFix)), nil
			}
			return nil, nil, fmt.Errorf("SSM GetParameters: %w", err)
		}
		for _, p := range out.Parameters {
			values[aws.ToString(p.Name)] = aws.ToString(p.Value)
		}
		for _, name := range out.InvalidParameters {
			notes = append(notes, fmt.Sprintf("SSM parameter %s does not exist", name))
		}
	}
	return values, notes, nil
}

// amis resolves the terms to the newest image of each architecture; notes
// say what could not be found, for the AMIsReady condition.
func (r *Resolver) amis(ctx context.Context, terms []awsv1.AMISelectorTerm) ([]awsv1.AMI, []string, error) {
	var queries []*ec2.DescribeImagesInput
	var notes, ssmNames []string
	for i, t := range terms {
		switch {
		case t.SSMParameter != "":
			ssmNames = append(ssmNames, t.SSMParameter)
		case t.Alias != "":
			family, version, _ := strings.Cut(t.Alias, "@")
			params, err := r.aliasParameters(family, version)
			if err != nil {
				notes = append(notes, fmt.Sprintf("spec.amiSelectorTerms[%d].%s", i, err))
				continue
			}
			for _, arch := range sortedStringKeys(params) {
				ssmNames = append(ssmNames, params[arch])
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
	if len(ssmNames) > 0 {
		values, ssmNotes, err := r.parameters(ctx, ssmNames)
		if err != nil {
			return nil, nil, err
		}
		notes = append(notes, ssmNotes...)
		var ids []string
		for _, name := range ssmNames {
			if id := values[name]; id != "" {
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			queries = append(queries, &ec2.DescribeImagesInput{ImageIds: ids})
		}
	}
	// The newest image of each architecture wins.
	newest := map[string]ec2types.Image{}
	for _, q := range queries {
		out, err := r.ec2.DescribeImages(ctx, q)
		if err != nil {
			return nil, nil, fmt.Errorf("DescribeImages: %w", err)
		}
		for _, img := range out.Images {
			arch := string(img.Architecture)
			if cur, ok := newest[arch]; !ok || aws.ToString(img.CreationDate) > aws.ToString(cur.CreationDate) {
				newest[arch] = img
			}
		}
	}
	var out []awsv1.AMI
	for _, arch := range []string{"x86_64", "arm64"} {
		img, ok := newest[arch]
		if !ok {
			continue
		}
		k8sArch := "amd64"
		if arch == "arm64" {
			k8sArch = "arm64"
		}
		out = append(out, awsv1.AMI{ID: aws.ToString(img.ImageId), Name: aws.ToString(img.Name), Deprecated: aws.ToString(img.DeprecationTime) != "",
			Requirements: []awsv1.AMIRequirement{{Key: corev1.LabelArchStable, Operator: string(v1.OpIn), Values: []string{k8sArch}}}})
	}
	return out, notes, nil
}

// instanceProfile is the class's instance profile, or the one Backstop names
// for its role (created by the node-role setup, as Karpenter's is).
func (r *Resolver) instanceProfile(nc *awsv1.EC2NodeClass) string {
	if nc.Spec.InstanceProfile != nil {
		return *nc.Spec.InstanceProfile
	}
	if nc.Spec.Role != "" {
		return fmt.Sprintf("%s_%s", r.clusterName, nc.Spec.Role)
	}
	return ""
}
