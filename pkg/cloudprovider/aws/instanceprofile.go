package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	corev1 "k8s.io/api/core/v1"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
)

// PolicyFile is where the controller's IAM policy ships, for messages that
// tell a user which permission is missing.
const PolicyFile = "charts/backstop/iam/controller-policy.json"

// InstanceProfiles makes the instance profile of each EC2NodeClass that
// names a role, checks the one a class names itself, and removes the ones it
// made — never one it did not make (its tags say whose it is).
type InstanceProfiles struct {
	iam             *iam.Client
	cluster, region string
}

// NewInstanceProfiles returns the instance-profile manager of a cluster.
func NewInstanceProfiles(client *iam.Client, cluster, region string) *InstanceProfiles {
	return &InstanceProfiles{iam: client, cluster: cluster, region: region}
}

// Name is the profile Backstop makes for a class: the cluster's name and a
// hash of region and class, within IAM's 128 characters.
func (p *InstanceProfiles) Name(class string) string {
	sum := sha256.Sum256([]byte(p.region + "/" + class))
	prefix := p.cluster
	if len(prefix) > 100 {
		prefix = prefix[:100]
	}
	return prefix + "_" + hex.EncodeToString(sum[:8])
}

// tags are those of a profile Backstop makes; the controller policy allows
// creating only profiles that carry them, and managing only those that do.
func (p *InstanceProfiles) tags(nc *awsv1.EC2NodeClass) map[string]string {
	tags := map[string]string{}
	for k, v := range nc.Spec.Tags {
		tags[k] = v
	}
	tags[ClusterTag(p.cluster)] = "owned"
	tags[TagEKSName] = p.cluster
	tags[corev1.LabelTopologyRegion] = p.region
	tags[TagNodeClass] = nc.Name
	return tags
}

// ours reports whether Backstop made the profile for this class.
func (p *InstanceProfiles) ours(profile *iamtypes.InstanceProfile, class string) bool {
	have := map[string]string{}
	for _, t := range profile.Tags {
		have[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return have[ClusterTag(p.cluster)] == "owned" && have[TagNodeClass] == class && have[corev1.LabelTopologyRegion] == p.region
}

// roleName accepts a role's name or its ARN.
func roleName(role string) string {
	return role[strings.LastIndex(role, "/")+1:]
}

// iamProblem turns a refused IAM call into what to do, or returns "" for an
// error that is not the user's to fix.
func iamProblem(err error, action, subject string) string {
	cause := causeOf(err)
	switch cause.Code {
	case "AccessDenied", "AccessDeniedException":
		return fmt.Sprintf("the controller may not %s on %s (%s, request %s): grant it %s as %s does", action, subject, cause.Code, cause.RequestID, action, PolicyFile)
	}
	return ""
}

// Ensure returns the class's instance profile, made and given its role when
// the class names a role. A problem the user must fix is returned as a
// message naming the field and the fix; err is for failures worth a retry.
func (p *InstanceProfiles) Ensure(ctx context.Context, nc *awsv1.EC2NodeClass) (name, problem string, err error) {
	if nc.Spec.InstanceProfile != nil {
		return p.checkNamed(ctx, *nc.Spec.InstanceProfile)
	}
	if nc.Spec.Role == "" {
		return "", "set spec.role (Backstop makes the instance profile) or spec.instanceProfile", nil
	}
	name = p.Name(nc.Name)
	role := roleName(nc.Spec.Role)
	profile, err := p.get(ctx, name)
	switch {
	case err != nil && isNoSuchEntity(err):
		out, cerr := p.iam.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(name), Tags: iamTagList(p.tags(nc))})
		if cerr != nil {
			if msg := iamProblem(cerr, "iam:CreateInstanceProfile", "instance profile "+name); msg != "" {
				return "", msg, nil
			}
			return "", "", fmt.Errorf("creating instance profile %s: %w", name, cerr)
		}
		profile = out.InstanceProfile
	case err != nil:
		if msg := iamProblem(err, "iam:GetInstanceProfile", "instance profile "+name); msg != "" {
			return "", msg, nil
		}
		return "", "", fmt.Errorf("reading instance profile %s: %w", name, err)
	case !p.ours(profile, nc.Name):
		return "", fmt.Sprintf("instance profile %s exists but Backstop did not make it for this EC2NodeClass, and it never changes a profile it did not make: delete it, or name a profile of your own in spec.instanceProfile", name), nil
	}
	for _, r := range profile.Roles {
		if aws.ToString(r.RoleName) == role {
			return name, "", nil
		}
		// spec.role changed: the profile takes the new role.
		if _, err := p.iam.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: r.RoleName}); err != nil && !isNoSuchEntity(err) {
			if msg := iamProblem(err, "iam:RemoveRoleFromInstanceProfile", "instance profile "+name); msg != "" {
				return "", msg, nil
			}
			return "", "", fmt.Errorf("removing role %s from instance profile %s: %w", aws.ToString(r.RoleName), name, err)
		}
	}
	if _, err := p.iam.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: aws.String(role)}); err != nil {
		if isNoSuchEntity(err) {
			return "", fmt.Sprintf("spec.role: role %q does not exist in this account; create it (nodes need AmazonEKSWorkerNodePolicy, AmazonEKS_CNI_Policy, AmazonEC2ContainerRegistryReadOnly and AmazonSSMManagedInstanceCore) or name an existing role", role), nil
		}
		if msg := iamProblem(err, "iam:AddRoleToInstanceProfile", "instance profile "+name); msg != "" {
			return "", msg, nil
		}
		return "", "", fmt.Errorf("adding role %s to instance profile %s: %w", role, name, err)
	}
	return name, "", nil
}

// checkNamed checks a profile the class names exists and has a role.
func (p *InstanceProfiles) checkNamed(ctx context.Context, name string) (string, string, error) {
	profile, err := p.get(ctx, name)
	switch {
	case err != nil && isNoSuchEntity(err):
		return "", fmt.Sprintf("spec.instanceProfile: instance profile %q does not exist; create it with the node role, or set spec.role instead and Backstop makes one", name), nil
	case err != nil:
		if msg := iamProblem(err, "iam:GetInstanceProfile", "instance profile "+name); msg != "" {
			return "", msg, nil
		}
		return "", "", fmt.Errorf("reading instance profile %s: %w", name, err)
	case len(profile.Roles) == 0:
		return "", fmt.Sprintf("spec.instanceProfile: instance profile %q has no role, so nodes would have no credentials to join; add the node role to it", name), nil
	}
	return name, "", nil
}

// Delete removes the profile Backstop made for the class, if any; a profile
// it did not make, or one the class names itself, is left alone.
func (p *InstanceProfiles) Delete(ctx context.Context, nc *awsv1.EC2NodeClass) error {
	if nc.Spec.InstanceProfile != nil || nc.Spec.Role == "" {
		return nil
	}
	name := p.Name(nc.Name)
	profile, err := p.get(ctx, name)
	switch {
	case err != nil && isNoSuchEntity(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading instance profile %s: %w", name, err)
	case !p.ours(profile, nc.Name):
		return nil
	}
	for _, r := range profile.Roles {
		if _, err := p.iam.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: r.RoleName}); err != nil && !isNoSuchEntity(err) {
			return fmt.Errorf("removing role %s from instance profile %s: %w", aws.ToString(r.RoleName), name, err)
		}
	}
	if _, err := p.iam.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: aws.String(name)}); err != nil && !isNoSuchEntity(err) {
		return fmt.Errorf("deleting instance profile %s: %w", name, err)
	}
	return nil
}

func (p *InstanceProfiles) get(ctx context.Context, name string) (*iamtypes.InstanceProfile, error) {
	out, err := p.iam.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
	if err != nil {
		return nil, err
	}
	return out.InstanceProfile, nil
}

func isNoSuchEntity(err error) bool {
	fe, ok := FromAPIError(err)
	return ok && fe.Code == "NoSuchEntity"
}

func iamTagList(m map[string]string) []iamtypes.Tag {
	out := make([]iamtypes.Tag, 0, len(m))
	for _, k := range sortedStringKeys(m) {
		out = append(out, iamtypes.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}
