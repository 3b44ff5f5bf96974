package ec2sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
)

// The public parameters AWS publishes for its EKS images, as the simulator
// derives them from the images it has: the newest of each kind under
// "recommended"/"latest", every one under its own pinned path.
var (
	al2023Image = regexp.MustCompile(`^amazon-eks-node-al2023-(x86_64|arm64)-(standard|nvidia|neuron)-(\d+\.\d+)-(v\d+)$`)
	al2Image    = regexp.MustCompile(`^amazon-eks-(arm64-|gpu-)?node-(\d+\.\d+)-(v\d+)$`)
	brImage     = regexp.MustCompile(`^bottlerocket-aws-k8s-(\d+\.\d+)(-nvidia)?-(x86_64|aarch64)-v(\d+\.\d+\.\d+)`)
	// Windows images are published under their latest parameter only.
	windowsImage = regexp.MustCompile(`^(Windows_Server-\d{4}-English-(Core|Full)-EKS_Optimized-\d+\.\d+)-\d{4}\.\d{2}\.\d{2}$`)
)

// ssmParameters are the parameters of the account: the public EKS ones
// derived from the images, and those of the config.
func (s *Server) ssmParameters() map[string]string {
	params := map[string]string{}
	newest := map[string]ImageConfig{}
	publish := func(latest, pinned string, img ImageConfig) {
		params[pinned] = img.ID
		if cur, ok := newest[latest]; !ok || img.CreationDate > cur.CreationDate {
			newest[latest] = img
		}
	}
	for _, img := range s.cfg.Images {
		if m := al2023Image.FindStringSubmatch(img.Name); m != nil {
			base := fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2023/%s/%s/", m[3], m[1], m[2])
			publish(base+"recommended/image_id", base+img.Name+"/image_id", img)
		}
		if m := al2Image.FindStringSubmatch(img.Name); m != nil {
			dir := "amazon-linux-2" + map[string]string{"": "", "arm64-": "-arm64", "gpu-": "-gpu"}[m[1]]
			base := fmt.Sprintf("/aws/service/eks/optimized-ami/%s/%s/", m[2], dir)
			publish(base+"recommended/image_id", base+img.Name+"/image_id", img)
		}
		if m := windowsImage.FindStringSubmatch(img.Name); m != nil {
			latest := "/aws/service/ami-windows-latest/" + m[1] + "/image_id"
			if cur, ok := newest[latest]; !ok || img.CreationDate > cur.CreationDate {
				newest[latest] = img
			}
		}
		if m := brImage.FindStringSubmatch(img.Name); m != nil {
			arch := map[string]string{"x86_64": "x86_64", "aarch64": "arm64"}[m[3]]
			base := fmt.Sprintf("/aws/service/bottlerocket/aws-k8s-%s%s/%s/", m[1], m[2], arch)
			publish(base+"latest/image_id", base+m[4]+"/image_id", img)
		}
	}
	for name, img := range newest {
		params[name] = img.ID
	}
	for name, value := range s.cfg.SSMParameters {
		params[name] = value
	}
	return params
}

// serveSSM answers SSM's JSON 1.1 protocol: GetParameter and GetParameters.
func (s *Server) serveSSM(w http.ResponseWriter, r *http.Request, action string) {
	s.mu.Lock()
	s.ssmRequests++
	requestID := fmt.Sprintf("%08x-ssm-%d", s.ssmRequests, s.ssmRequests)
	s.mu.Unlock()
	var in struct {
		Name           string
		Names          []string
		WithDecryption bool
	}
	reply := func(status int, v any) {
		w.Header().Set("X-Amzn-Requestid", requestID)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	record := func(code string) {
		params := map[string]string{"Name": in.Name, "Names": strings.Join(in.Names, ",")}
		s.mu.Lock()
		s.requests = append(s.requests, Request{Action: "ssm:" + action, Params: params, Error: code, Time: s.clock.Now()})
		s.mu.Unlock()
	}
	fail := func(status int, code, msg string) {
		record(code)
		reply(status, map[string]string{"__type": code, "message": msg})
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		fail(http.StatusBadRequest, "ValidationException", "Content-Type must be application/x-amz-json-1.1, not "+ct)
		return
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(http.StatusBadRequest, "ValidationException", "malformed JSON: "+err.Error())
		return
	}
	s.mu.Lock()
	params := s.ssmParameters()
	denied := s.cfg.Faults.SSMAccessDenied
	var auths []Authorization
	for _, name := range append([]string{in.Name}, in.Names...) {
		if name != "" {
			auths = append(auths, Authorization{Action: "ssm:" + action, Resource: s.ssmParameterARN(name), Context: s.context(nil, nil)})
		}
	}
	refused := s.denied(auths)
	s.mu.Unlock()
	if refused != "" {
		fail(http.StatusBadRequest, "AccessDeniedException", refused)
		return
	}
	if denied {
		fail(http.StatusBadRequest, "AccessDeniedException", "User: arn:aws:sts::"+accountID+":assumed-role/backstop is not authorized to perform: ssm:"+action+" because no identity-based policy allows the ssm:"+action+" action")
		return
	}
	parameter := func(name string) map[string]any {
		return map[string]any{"Name": name, "Type": "String", "Value": params[name], "Version": 1, "DataType": dataType(name),
			"ARN": fmt.Sprintf("arn:aws:ssm:%s::parameter%s", s.cfg.Region, name)}
	}
	switch action {
	case "GetParameter":
		if _, ok := params[in.Name]; !ok {
			fail(http.StatusBadRequest, "ParameterNotFound", "Parameter "+in.Name+" not found.")
			return
		}
		record("")
		reply(http.StatusOK, map[string]any{"Parameter": parameter(in.Name)})
	case "GetParameters":
		if len(in.Names) == 0 || len(in.Names) > 10 {
			fail(http.StatusBadRequest, "ValidationException", fmt.Sprintf("1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length between 1 and 10 (got %d)", len(in.Names)))
			return
		}
		var found []map[string]any
		invalid := []string{}
		for _, name := range in.Names {
			if _, ok := params[name]; ok {
				found = append(found, parameter(name))
			} else {
				invalid = append(invalid, name)
			}
		}
		sort.Strings(invalid)
		record("")
		reply(http.StatusOK, map[string]any{"Parameters": found, "InvalidParameters": invalid})
	default:
		fail(http.StatusBadRequest, "InvalidAction", "The action "+action+" is not valid for this web service.")
	}
}

// dataType is aws:ec2:image for the public image parameters, as AWS tags them.
func dataType(name string) string {
	if strings.HasPrefix(name, "/aws/service/") {
		return "aws:ec2:image"
	}
	return "text"
}
