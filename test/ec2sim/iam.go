package ec2sim

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// IAM speaks the same Query protocol as EC2 (form-encoded, Version
// 2010-05-08) but answers in its own XML: <XResponse><XResult>…, lists as
// <member>, errors as <ErrorResponse><Error>. The simulator keeps the roles
// of its config and the instance profiles made in it.

const iamVersion = "2010-05-08"
const iamXmlns = "https://iam.amazonaws.com/doc/2010-05-08/"

// InstanceProfileConfig is an instance profile that exists from the start,
// as one made by hand or by CloudFormation.
type InstanceProfileConfig struct {
	Name string            `json:"name"`
	Role string            `json:"role,omitempty"`
	Tags map[string]string `json:"tags,omitempty"`
}

type instanceProfile struct {
	name, id string
	roles    []string
	tags     map[string]string
	created  time.Time
	// visible is when EC2 sees the profile as it now is (IAMPropagation
	// after its creation or its last role change).
	visible time.Time
}

var iamName = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)

func (s *Server) profileARN(name string) string {
	return fmt.Sprintf("arn:aws:iam::%s:instance-profile/%s", accountID, name)
}

func (s *Server) roleARN(name string) string {
	return fmt.Sprintf("arn:aws:iam::%s:role/%s", accountID, name)
}

type iamRoleXML struct {
	Path       string `xml:"Path"`
	RoleName   string `xml:"RoleName"`
	RoleID     string `xml:"RoleId"`
	Arn        string `xml:"Arn"`
	CreateDate string `xml:"CreateDate"`
}

type iamTagXML struct {
	Key   string `xml:"Key"`
	Value string `xml:"Value"`
}

type instanceProfileXML struct {
	Path                string       `xml:"Path"`
	InstanceProfileName string       `xml:"InstanceProfileName"`
	InstanceProfileID   string       `xml:"InstanceProfileId"`
	Arn                 string       `xml:"Arn"`
	CreateDate          string       `xml:"CreateDate"`
	Roles               []iamRoleXML `xml:"Roles>member"`
	Tags                []iamTagXML  `xml:"Tags>member,omitempty"`
}

type iamErrorResponse struct {
	XMLName   xml.Name `xml:"ErrorResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	Type      string   `xml:"Error>Type"`
	Code      string   `xml:"Error>Code"`
	Message   string   `xml:"Error>Message"`
	RequestID string   `xml:"RequestId"`
}

func (s *Server) profileXML(p *instanceProfile) *instanceProfileXML {
	out := &instanceProfileXML{Path: "/", InstanceProfileName: p.name, InstanceProfileID: p.id, Arn: s.profileARN(p.name),
		CreateDate: p.created.UTC().Format(time.RFC3339)}
	for _, r := range p.roles {
		out.Roles = append(out.Roles, iamRoleXML{Path: "/", RoleName: r, RoleID: "AROA" + strings.ToUpper(fmt.Sprintf("%016x", len(r))), Arn: s.roleARN(r),
			CreateDate: "2026-01-01T00:00:00Z"})
	}
	for _, k := range sortedKeys(p.tags) {
		out.Tags = append(out.Tags, iamTagXML{Key: k, Value: p.tags[k]})
	}
	return out
}

func iamTags(p *params) map[string]string {
	tags := map[string]string{}
	for _, t := range p.sub("Tags").list("member") {
		tags[t.get("Key")] = t.get("Value")
	}
	return tags
}

func noSuchEntity(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, code: "NoSuchEntity", message: fmt.Sprintf(format, args...)}
}

// iamDispatch acts on an IAM request; locked.
func (s *Server) iamDispatch(action string, p *params) (any, *apiError) {
	name := p.get("InstanceProfileName")
	profile := s.profiles[name]
	response := func(profile *instanceProfile) any {
		a := &iamAnswer{action: action}
		if profile != nil {
			a.profile = s.profileXML(profile)
		}
		return a
	}
	if name == "" {
		return nil, &apiError{status: http.StatusBadRequest, code: "ValidationError", message: "1 validation error detected: Value null at 'instanceProfileName' failed to satisfy constraint: Member must not be null"}
	}
	if !iamName.MatchString(name) {
		return nil, &apiError{status: http.StatusBadRequest, code: "ValidationError", message: fmt.Sprintf("The specified value for instanceProfileName is invalid. It must contain only alphanumeric characters and/or the following: +=,.@_-: %q", name)}
	}
	switch action {
	case "CreateInstanceProfile":
		if profile != nil {
			return nil, &apiError{status: http.StatusConflict, code: "EntityAlreadyExists", message: fmt.Sprintf("Instance Profile %s already exists.", name)}
		}
		profile = &instanceProfile{name: name, id: "AIPA" + strings.ToUpper(s.nextID("ip")[3:]), tags: iamTags(p), created: s.clock.Now()}
		profile.visible = profile.created.Add(s.cfg.IAMPropagation.Duration)
		s.profiles[name] = profile
		return response(profile), nil
	case "GetInstanceProfile":
		if profile == nil {
			return nil, noSuchEntity("Instance Profile %s cannot be found.", name)
		}
		return response(profile), nil
	case "TagInstanceProfile":
		if profile == nil {
			return nil, noSuchEntity("The Instance Profile with name %s cannot be found.", name)
		}
		for k, v := range iamTags(p) {
			profile.tags[k] = v
		}
		return response(nil), nil
	case "AddRoleToInstanceProfile":
		role := p.get("RoleName")
		if profile == nil {
			return nil, noSuchEntity("Instance Profile %s cannot be found.", name)
		}
		if !contains(s.cfg.IAMRoles, role) {
			return nil, noSuchEntity("The role with name %s cannot be found.", role)
		}
		if len(profile.roles) > 0 {
			return nil, &apiError{status: http.StatusConflict, code: "LimitExceeded", message: "Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1"}
		}
		profile.roles = []string{role}
		profile.visible = s.clock.Now().Add(s.cfg.IAMPropagation.Duration)
		return response(nil), nil
	case "RemoveRoleFromInstanceProfile":
		role := p.get("RoleName")
		if profile == nil || !contains(profile.roles, role) {
			return nil, noSuchEntity("The role with name %s cannot be found in instance profile %s.", role, name)
		}
		profile.roles = nil
		return response(nil), nil
	case "DeleteInstanceProfile":
		if profile == nil {
			return nil, noSuchEntity("Instance Profile %s cannot be found.", name)
		}
		if len(profile.roles) > 0 {
			return nil, &apiError{status: http.StatusConflict, code: "DeleteConflict", message: "Cannot delete entity, must remove roles from instance profile first."}
		}
		delete(s.profiles, name)
		return response(nil), nil
	}
	return nil, &apiError{status: http.StatusBadRequest, code: "InvalidAction", message: fmt.Sprintf("Could not find operation %s for version %s", action, iamVersion)}
}

// iamAnswer writes <XResponse><XResult>[profile]</XResult><ResponseMetadata>.
type iamAnswer struct {
	action    string
	profile   *instanceProfileXML
	requestID string
}

func (a *iamAnswer) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	start := xml.StartElement{Name: xmlName(a.action + "Response"), Attr: []xml.Attr{{Name: xmlName("xmlns"), Value: iamXmlns}}}
	result := xml.StartElement{Name: xmlName(a.action + "Result")}
	meta := xml.StartElement{Name: xmlName("ResponseMetadata")}
	for _, t := range []xml.Token{start, result} {
		if err := e.EncodeToken(t); err != nil {
			return err
		}
	}
	if a.profile != nil {
		if err := e.EncodeElement(a.profile, xml.StartElement{Name: xmlName("InstanceProfile")}); err != nil {
			return err
		}
	}
	for _, t := range []xml.Token{result.End(), meta} {
		if err := e.EncodeToken(t); err != nil {
			return err
		}
	}
	if err := e.EncodeElement(a.requestID, xml.StartElement{Name: xmlName("RequestId")}); err != nil {
		return err
	}
	for _, t := range []xml.Token{meta.End(), start.End()} {
		if err := e.EncodeToken(t); err != nil {
			return err
		}
	}
	return nil
}

// InstanceProfiles lists the simulated instance profiles: name → role ("" for none).
func (s *Server) InstanceProfiles() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for name, p := range s.profiles {
		out[name] = strings.Join(p.roles, ",")
	}
	return out
}

// InstanceProfileTags returns a profile's tags, nil when it does not exist.
func (s *Server) InstanceProfileTags(name string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.profiles[name]
	if !ok {
		return nil
	}
	out := map[string]string{}
	for k, v := range p.tags {
		out[k] = v
	}
	return out
}

// serveIAM answers an IAM Query request; IAM has its own request count, so
// EC2's scripted faults do not touch it.
func (s *Server) serveIAM(w http.ResponseWriter, r *http.Request, action string, p *params) {
	s.mu.Lock()
	s.iamRequests++
	requestID := fmt.Sprintf("%08x-iam-%d", s.iamRequests, s.iamRequests)
	var body any
	var err *apiError
	if msg := s.authorizeIAM(action, p); msg != "" {
		err = &apiError{status: http.StatusForbidden, code: "AccessDenied", message: msg}
	} else {
		body, err = s.iamDispatch(action, p)
	}
	s.mu.Unlock()
	s.record("iam:"+action, r.Form, err)
	w.Header().Set("X-Amzn-Requestid", requestID)
	w.Header().Set("Content-Type", "text/xml")
	if err != nil {
		kind := "Sender"
		if err.status >= 500 {
			kind = "Receiver"
		}
		w.WriteHeader(err.status)
		_, _ = w.Write([]byte(xml.Header))
		_ = xml.NewEncoder(w).Encode(iamErrorResponse{Xmlns: iamXmlns, Type: kind, Code: err.code, Message: err.message, RequestID: requestID})
		return
	}
	body.(*iamAnswer).requestID = requestID
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(body)
}
