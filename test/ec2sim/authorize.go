package ec2sim

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
)

// The simulator holds every request to Config.Policy, as AWS holds the
// controller's role to its policies: each request lists the actions on
// resources it needs, with the request context (tags asked for, tags the
// resource has) their conditions read. Denied requests fail the way the
// service fails them; CreateFleet, which launches through RunInstances on the
// caller's behalf, reports denied launches as fleet errors.

func (s *Server) arn(service, resource string) string {
	account := accountID
	if service == "ec2" && (strings.HasPrefix(resource, "image/") || strings.HasPrefix(resource, "snapshot/")) {
		account = ""
	}
	return fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, s.cfg.Region, account, resource)
}

func (s *Server) context(requestTags, resourceTags map[string]string, extra ...string) map[string][]string {
	ctx := map[string][]string{"aws:RequestedRegion": {s.cfg.Region}}
	if requestTags != nil {
		keys := make([]string, 0, len(requestTags))
		for k, v := range requestTags {
			ctx["aws:RequestTag/"+k] = []string{v}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		ctx["aws:TagKeys"] = keys
	}
	for k, v := range resourceTags {
		ctx["aws:ResourceTag/"+k] = []string{v}
	}
	for i := 0; i+1 < len(extra); i += 2 {
		ctx[extra[i]] = []string{extra[i+1]}
	}
	return ctx
}

// denied checks authorizations against the policy; locked. It returns the
// first denial as AWS words it, "" when all are allowed or no policy is set.
func (s *Server) denied(auths []Authorization) string {
	if s.cfg.Policy == nil {
		return ""
	}
	for _, a := range auths {
		if ok, why := s.cfg.Policy.Allows(a); !ok {
			return fmt.Sprintf("User: arn:aws:sts::%s:assumed-role/backstop-controller/backstop is not authorized to perform: %s on resource: %s %s",
				accountID, a.Action, a.Resource, why)
		}
	}
	return ""
}

func unauthorized(msg string) *apiError {
	return &apiError{status: http.StatusForbidden, code: "UnauthorizedOperation", message: "You are not authorized to perform this operation. " + msg}
}

// authorizeEC2 checks what an EC2 request needs for itself; locked. The
// launches CreateFleet makes are checked by launchDenied.
func (s *Server) authorizeEC2(action string, p *params) *apiError {
	if s.cfg.Policy == nil || action == "" {
		return nil
	}
	var auths []Authorization
	tagging := func(resource, createAction string, tags map[string]string) {
		if len(tags) > 0 {
			auths = append(auths, Authorization{Action: "ec2:CreateTags", Resource: s.arn("ec2", resource),
				Context: s.context(tags, nil, "ec2:CreateAction", createAction)})
		}
	}
	switch {
	case strings.HasPrefix(action, "Describe"):
		auths = append(auths, Authorization{Action: "ec2:" + action, Resource: "*", Context: s.context(nil, nil)})
	case action == "CreateFleet":
		tags := p.tags("fleet")
		auths = append(auths, Authorization{Action: "ec2:CreateFleet", Resource: s.arn("ec2", "fleet/*"), Context: s.context(tags, nil)})
		tagging("fleet/*", "CreateFleet", tags)
	case action == "CreateLaunchTemplate":
		tags := p.tags("launch-template")
		auths = append(auths, Authorization{Action: "ec2:CreateLaunchTemplate", Resource: s.arn("ec2", "launch-template/*"), Context: s.context(tags, nil)})
		tagging("launch-template/*", "CreateLaunchTemplate", tags)
	case action == "DeleteLaunchTemplate":
		if lt, err := s.templateFrom(p); err == nil {
			auths = append(auths, Authorization{Action: "ec2:DeleteLaunchTemplate", Resource: s.arn("ec2", "launch-template/"+lt.id), Context: s.context(nil, lt.tags)})
		}
	case action == "TerminateInstances":
		for _, id := range p.strings("InstanceId") {
			if inst, ok := s.instances[id]; ok {
				auths = append(auths, Authorization{Action: "ec2:TerminateInstances", Resource: s.arn("ec2", "instance/"+id), Context: s.context(nil, inst.Tags)})
			}
		}
	case action == "CreateTags":
		tags := map[string]string{}
		for _, t := range p.list("Tag") {
			tags[t.get("Key")] = t.get("Value")
		}
		for _, id := range p.strings("ResourceId") {
			var have map[string]string
			resource := "instance/" + id
			if inst, ok := s.instances[id]; ok {
				have = inst.Tags
			} else if lt, ok := s.templates[id]; ok {
				have, resource = lt.tags, "launch-template/"+id
			}
			auths = append(auths, Authorization{Action: "ec2:CreateTags", Resource: s.arn("ec2", resource), Context: s.context(tags, have)})
		}
	case action == "RunInstances":
		// Checked with the launch itself.
	default:
		auths = append(auths, Authorization{Action: "ec2:" + action, Resource: "*", Context: s.context(nil, nil)})
	}
	if msg := s.denied(auths); msg != "" {
		return unauthorized(msg)
	}
	return nil
}

// launchDenied checks what launching from a template needs — RunInstances
// and CreateFleet on the instance, its volumes and network interface, the
// Spot request, the template, image, subnet and security groups; tagging
// them; passing the instance profile's role — and returns the denial; locked.
func (s *Server) launchDenied(lt *launchTemplate, subnets []string, capacityType string, instanceTags, volumeTags map[string]string) string {
	if s.cfg.Policy == nil {
		return ""
	}
	merged := func(resourceType string, extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range lt.tagSpecs[resourceType] {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	created := map[string]map[string]string{
		"instance/*":          merged("instance", instanceTags),
		"volume/*":            merged("volume", volumeTags),
		"network-interface/*": merged("network-interface", nil),
	}
	if capacityType == spot {
		created["spot-instances-request/*"] = merged("spot-instances-request", nil)
	}
	var auths []Authorization
	for _, action := range []string{"ec2:RunInstances", "ec2:CreateFleet"} {
		for _, resource := range sortedKeysOfTags(created) {
			auths = append(auths, Authorization{Action: action, Resource: s.arn("ec2", resource), Context: s.context(created[resource], nil)})
		}
		used := []string{"launch-template/" + lt.id, "image/" + lt.imageID}
		for _, sn := range subnets {
			used = append(used, "subnet/"+sn)
		}
		for _, sg := range lt.securityGroups {
			used = append(used, "security-group/"+sg)
		}
		if lt.reservation != "" {
			used = append(used, "capacity-reservation/"+lt.reservation)
		}
		if g, _, _ := s.templateGroup(lt); g != nil {
			// A placement group's ARN carries its name.
			used = append(used, "placement-group/"+g.name)
		}
		for _, resource := range used {
			have := map[string]string(nil)
			if strings.HasPrefix(resource, "launch-template/") {
				have = lt.tags
			}
			auths = append(auths, Authorization{Action: action, Resource: s.arn("ec2", resource), Context: s.context(nil, have)})
		}
	}
	for _, resource := range sortedKeysOfTags(created) {
		if len(created[resource]) > 0 {
			auths = append(auths, Authorization{Action: "ec2:CreateTags", Resource: s.arn("ec2", resource),
				Context: s.context(created[resource], nil, "ec2:CreateAction", "CreateFleet")})
		}
	}
	if p, ok := s.profiles[lt.instanceProfile]; ok {
		for _, role := range p.roles {
			auths = append(auths, Authorization{Action: "iam:PassRole", Resource: s.roleARN(role),
				Context: s.context(nil, nil, "iam:PassedToService", "ec2.amazonaws.com")})
		}
	}
	return s.denied(auths)
}

func sortedKeysOfTags(m map[string]map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// authorizeIAM checks an instance-profile action; locked.
func (s *Server) authorizeIAM(action string, p *params) string {
	name := p.get("InstanceProfileName")
	var have map[string]string
	if profile, ok := s.profiles[name]; ok {
		have = profile.tags
	}
	var request map[string]string
	if action == "CreateInstanceProfile" || action == "TagInstanceProfile" {
		request = iamTags(p)
		have = nil
		if action == "TagInstanceProfile" && s.profiles[name] != nil {
			have = s.profiles[name].tags
		}
	}
	return s.denied([]Authorization{{Action: "iam:" + action, Resource: s.profileARN(name), Context: s.context(request, have)}})
}

// ssmParameterARN is a parameter's ARN: AWS's public ones have no account.
func (s *Server) ssmParameterARN(name string) string {
	account := accountID
	if strings.HasPrefix(name, "/aws/service/") {
		account = ""
	}
	return fmt.Sprintf("arn:aws:ssm:%s:%s:parameter/%s", s.cfg.Region, account, strings.TrimPrefix(name, "/"))
}

// sqsQueueARN names the queue of a QueueUrl or QueueName.
func (s *Server) sqsQueueARN(queue string) string {
	if u, err := url.Parse(queue); err == nil && u.Path != "" {
		queue = path.Base(u.Path)
	}
	return fmt.Sprintf("arn:aws:sqs:%s:%s:%s", s.cfg.Region, accountID, queue)
}
