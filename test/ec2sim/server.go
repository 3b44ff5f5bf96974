// Package ec2sim is an EC2 simulator: an HTTP server that speaks the EC2 Query
// API (form-encoded requests, XML answers and XML errors with request ids), so
// Backstop's AWS code runs against it through the unmodified aws-sdk-go-v2 EC2
// client with only the endpoint changed. Its instance catalog is the real one
// compiled into pkg/cloudprovider/aws/catalog; capacity, quotas, throttling and
// failures are scripted by Config and the admin endpoint.
package ec2sim

import (
	"encoding/xml"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
)

// Request is one API call as the simulator received it.
type Request struct {
	Action string            `json:"action"`
	Params map[string]string `json:"params"`
	// Error is the error code answered, "" for success.
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`
}

// Instance is a simulated EC2 instance.
type Instance struct {
	ID           string            `json:"id"`
	Type         string            `json:"type"`
	Zone         string            `json:"zone"`
	SubnetID     string            `json:"subnetID"`
	ImageID      string            `json:"imageID"`
	CapacityType string            `json:"capacityType"`
	State        string            `json:"state"`
	LaunchTime   time.Time         `json:"launchTime"`
	Tags         map[string]string `json:"tags"`
	ClientToken  string            `json:"clientToken,omitempty"`
	// Interrupted is set when a Spot interruption was scripted for it; the
	// instance ends at TerminateAt, two minutes later.
	Interrupted bool      `json:"interrupted,omitempty"`
	TerminateAt time.Time `json:"terminateAt,omitempty"`
	// UserData is what the instance boots from: its launch template's user
	// data, decoded from base64.
	UserData string `json:"userData,omitempty"`
	// SecurityGroupIDs are the groups its launch template attached.
	SecurityGroupIDs []string `json:"securityGroupIDs,omitempty"`
	// Options are its launch template's other settings.
	Options LaunchOptions `json:"options,omitempty"`
	// CapacityReservationID is the reservation it runs in, if any.
	CapacityReservationID string `json:"capacityReservationID,omitempty"`
	// PlacementGroup is the name of the placement group it runs in, and
	// PartitionNumber its partition in a partition group.
	PlacementGroup   string `json:"placementGroup,omitempty"`
	PartitionNumber  int    `json:"partitionNumber,omitempty"`
	placementGroupID string
	privateIP        string
}

type launchTemplate struct {
	id, name string
	imageID  string
	userData string
	// securityGroups are the groups its instances attach, from
	// SecurityGroupIds or the first network interface's Groups.
	securityGroups []string
	created        time.Time
	tags           map[string]string
	// tagSpecs are the tags its launches give what they create, by
	// resource type; instanceProfile the profile its instances get.
	tagSpecs        map[string]map[string]string
	instanceProfile string
	options         LaunchOptions
	// reservation is the capacity reservation its instances must run in
	// (CapacityReservationTarget with capacity-reservations-only);
	// reservationPreference its CapacityReservationPreference ("none" keeps
	// On-Demand instances out of open reservations).
	reservation           string
	reservationPreference string
	// placementGroupID or placementGroupName name the placement group its
	// instances run in (Placement.GroupId, Placement.GroupName), and
	// partitionNumber the partition they ask for (0: EC2 picks).
	placementGroupID, placementGroupName string
	partitionNumber                      int
}

// Server is the simulator. It is safe for concurrent use.
type Server struct {
	clock clock.Clock

	mu        sync.Mutex
	cfg       Config
	types     map[string]catalog.InstanceType
	typeNames []string
	instances map[string]*Instance
	order     []string
	templates map[string]*launchTemplate
	// reservations are the capacity reservations, by id, in creation order.
	reservations     map[string]*capacityReservation
	reservationOrder []string
	// placementGroups are the placement groups, by name, in creation order.
	placementGroups     map[string]*placementGroup
	placementGroupOrder []string
	fleetsByToken       map[string]*createFleetResponse
	requests            []Request
	seq                 int
	requestCount        int
	spotPriceFactor     map[string]float64
	queues              map[string]*queue
	messageSeq          int
	sqsRequests         int
	ssmRequests         int
	iamRequests         int
	profiles            map[string]*instanceProfile
	// beforeAnswer, when set, runs after EC2 has acted on a request and
	// before the answer is written: a test kills the client there.
	beforeAnswer func(action string)
}

// BeforeAnswer sets a function called after each request has been acted on
// and before its answer is written (nil removes it); it runs on the request's
// goroutine, so the answer waits for it.
func (s *Server) BeforeAnswer(f func(action string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beforeAnswer = f
}

// New returns a simulator for cfg on the given clock.
func New(cfg Config, clk clock.Clock) (*Server, error) {
	cfg.withDefaults()
	if cfg.Policy == nil && cfg.PolicyFile != "" {
		p, err := LoadPolicy(cfg.PolicyFile, cfg.PolicyVars())
		if err != nil {
			return nil, err
		}
		cfg.Policy = p
	}
	all, err := catalog.Load()
	if err != nil {
		return nil, err
	}
	s := &Server{clock: clk, cfg: cfg, types: map[string]catalog.InstanceType{}, instances: map[string]*Instance{},
		templates: map[string]*launchTemplate{}, reservations: map[string]*capacityReservation{}, placementGroups: map[string]*placementGroup{}, fleetsByToken: map[string]*createFleetResponse{}, spotPriceFactor: map[string]float64{},
		queues: map[string]*queue{}, profiles: map[string]*instanceProfile{}}
	for _, p := range cfg.InstanceProfiles {
		ip := &instanceProfile{name: p.Name, id: "AIPA" + strings.ToUpper(s.nextID("ip")[3:]), tags: map[string]string{}, created: clk.Now()}
		if p.Role != "" {
			ip.roles = []string{p.Role}
		}
		for k, v := range p.Tags {
			ip.tags[k] = v
		}
		s.profiles[p.Name] = ip
	}
	if cfg.InterruptionQueue != "" {
		s.queues[cfg.InterruptionQueue] = newQueue(cfg.InterruptionQueue)
	}
	allowed := map[string]bool{}
	for _, t := range cfg.InstanceTypes {
		allowed[t] = true
	}
	for _, t := range all {
		if len(allowed) > 0 && !allowed[t.Name] {
			continue
		}
		s.types[t.Name] = t
		s.typeNames = append(s.typeNames, t.Name)
	}
	for name := range allowed {
		if _, ok := s.types[name]; !ok {
			return nil, fmt.Errorf("config instanceTypes: %q is not in the catalog", name)
		}
	}
	sort.Strings(s.typeNames)
	for i, c := range cfg.CapacityReservations {
		if _, err := s.reserve(c); err != nil {
			return nil, fmt.Errorf("config capacityReservations[%d]: %w", i, err)
		}
	}
	for i, c := range cfg.PlacementGroups {
		if _, err := s.addPlacementGroup(c); err != nil {
			return nil, fmt.Errorf("config placementGroups[%d]: %w", i, err)
		}
	}
	return s, nil
}

// onDemandPrice is the catalog's price in the region; 0 means not sold on demand.
func (s *Server) onDemandPrice(t catalog.InstanceType) float64 {
	if p, ok := t.OnDemandPriceUSD[s.cfg.Region]; ok {
		return p
	}
	return t.OnDemandPriceUSD["us-east-1"]
}

// spotPrice is a stable 25–45% of on-demand per type and zone.
func (s *Server) spotPrice(t catalog.InstanceType, zone string) float64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s/%s", s.cfg.SpotPriceSeed, t.Name, zone)
	factor := 0.25 + 0.20*float64(h.Sum64()%10000)/10000
	return math.Round(s.onDemandPrice(t)*factor*1e4) / 1e4
}

func (s *Server) nextID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s-%017x", prefix, s.seq)
}

// apiError is an EC2 error answered for the whole request.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func invalidParameter(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "InvalidParameterValue", message: fmt.Sprintf(format, args...)}
}

// ServeHTTP answers EC2 Query API requests, and admin requests under /admin/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/admin/") {
		s.serveAdmin(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/clusters/") {
		s.serveEKS(w, r)
		return
	}
	if target := r.Header.Get("X-Amz-Target"); strings.HasPrefix(target, "AmazonSQS.") {
		s.serveSQS(w, r, strings.TrimPrefix(target, "AmazonSQS."))
		return
	}
	if target := r.Header.Get("X-Amz-Target"); strings.HasPrefix(target, "AmazonSSM.") {
		s.serveSSM(w, r, strings.TrimPrefix(target, "AmazonSSM."))
		return
	}
	if err := r.ParseForm(); err != nil {
		s.writeError(w, &apiError{status: http.StatusBadRequest, code: "MalformedQueryString", message: err.Error()}, "")
		return
	}
	action := r.Form.Get("Action")
	p := parseParams(r.Form)
	if r.Form.Get("Version") == iamVersion {
		s.serveIAM(w, r, action, p)
		return
	}

	s.mu.Lock()
	latency := s.cfg.Faults.Latency.Duration
	s.requestCount++
	n := s.requestCount
	faults := s.cfg.Faults
	throttle := s.cfg.Faults.ThrottleNext > 0
	if throttle {
		s.cfg.Faults.ThrottleNext--
	}
	s.mu.Unlock()
	if latency > 0 {
		<-s.clock.After(latency)
	}

	var body any
	var err *apiError
	switch {
	case throttle || (faults.ThrottleEvery > 0 && n%faults.ThrottleEvery == 0):
		err = &apiError{status: http.StatusServiceUnavailable, code: "RequestLimitExceeded", message: "Request limit exceeded."}
	case faults.ServerErrorEvery > 0 && n%faults.ServerErrorEvery == 0:
		err = &apiError{status: http.StatusInternalServerError, code: "InternalError", message: "An internal error has occurred."}
	default:
		s.mu.Lock()
		if err = s.authorizeEC2(action, p); err == nil {
			body, err = s.dispatch(action, p)
		}
		if action == "CreateFleet" && err == nil && s.cfg.Faults.LoseFleetAnswers > 0 {
			s.cfg.Faults.LoseFleetAnswers--
			err = &apiError{status: http.StatusInternalServerError, code: "InternalError", message: "An internal error has occurred."}
		}
		s.mu.Unlock()
	}

	requestID := fmt.Sprintf("%08x-sim-%d", n, n)
	// EC2 names the request in a header as well as in the body.
	w.Header().Set("X-Amzn-Requestid", requestID)
	s.record(action, r.Form, err)
	s.mu.Lock()
	hook := s.beforeAnswer
	s.mu.Unlock()
	if hook != nil {
		hook(action)
	}
	if err != nil {
		s.writeError(w, err, requestID)
		return
	}
	setRequestID(body, requestID)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(body)
}

func (s *Server) record(action string, form map[string][]string, err *apiError) {
	params := map[string]string{}
	for k, v := range form {
		if k != "Action" && k != "Version" && len(v) > 0 {
			params[k] = v[0]
		}
	}
	req := Request{Action: action, Params: params, Time: s.clock.Now()}
	if err != nil {
		req.Error = err.code
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
}

func (s *Server) writeError(w http.ResponseWriter, e *apiError, requestID string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(errorResponse{Code: e.code, Message: e.message, RequestID: requestID})
}

func (s *Server) dispatch(action string, p *params) (any, *apiError) {
	switch action {
	case "CreateFleet":
		return s.createFleet(p)
	case "RunInstances":
		return s.runInstances(p)
	case "DescribeInstances":
		return s.describeInstances(p)
	case "TerminateInstances":
		return s.terminateInstances(p)
	case "CreateTags":
		return s.createTags(p)
	case "DescribeInstanceTypes":
		return s.describeInstanceTypes(p)
	case "DescribeInstanceTypeOfferings":
		return s.describeInstanceTypeOfferings(p)
	case "DescribeSpotPriceHistory":
		return s.describeSpotPriceHistory(p)
	case "DescribeSubnets":
		return s.describeSubnets(p)
	case "DescribeSecurityGroups":
		return s.describeSecurityGroups(p)
	case "DescribeImages":
		return s.describeImages(p)
	case "DescribeAvailabilityZones":
		return s.describeAvailabilityZones(p)
	case "CreateLaunchTemplate":
		return s.createLaunchTemplate(p)
	case "DescribeLaunchTemplates":
		return s.describeLaunchTemplates(p)
	case "CreateCapacityReservation":
		return s.createCapacityReservation(p)
	case "DescribeCapacityReservations":
		return s.describeCapacityReservations(p)
	case "CancelCapacityReservation":
		return s.cancelCapacityReservation(p)
	case "CreatePlacementGroup":
		return s.createPlacementGroup(p)
	case "DescribePlacementGroups":
		return s.describePlacementGroups(p)
	case "DeletePlacementGroup":
		return s.deletePlacementGroup(p)
	case "DeleteLaunchTemplate":
		return s.deleteLaunchTemplate(p)
	case "":
		return nil, &apiError{status: http.StatusBadRequest, code: "MissingAction", message: "The request must contain the parameter Action."}
	default:
		return nil, &apiError{status: http.StatusBadRequest, code: "InvalidAction", message: fmt.Sprintf("The action %s is not valid for this web service.", action)}
	}
}

// setRequestID fills the requestId field every response type has.
func setRequestID(body any, id string) {
	switch b := body.(type) {
	case *createFleetResponse:
		b.RequestID = id
	case *describeInstancesResponse:
		b.RequestID = id
	case *runInstancesResponse:
		b.RequestID = id
	case *terminateInstancesResponse:
		b.RequestID = id
	case *returnResponse:
		b.RequestID = id
	case *describeInstanceTypesResponse:
		b.RequestID = id
	case *describeOfferingsResponse:
		b.RequestID = id
	case *describeSpotPricesResponse:
		b.RequestID = id
	case *describeSubnetsResponse:
		b.RequestID = id
	case *describeSecurityGroupsResponse:
		b.RequestID = id
	case *describeImagesResponse:
		b.RequestID = id
	case *describeZonesResponse:
		b.RequestID = id
	case *launchTemplateResponse:
		b.RequestID = id
	case *describeLaunchTemplatesResponse:
		b.RequestID = id
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// page slices items by the MaxResults and NextToken parameters.
func page[T any](items []T, p *params, defaultMax int) ([]T, string, *apiError) {
	start := 0
	if tok := p.get("NextToken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", &apiError{status: http.StatusBadRequest, code: "InvalidNextToken", message: "The token " + tok + " is invalid."}
		}
		start = n
	}
	limit := defaultMax
	if m := p.get("MaxResults"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 {
			return nil, "", invalidParameter("MaxResults %q is not a positive number", m)
		}
		limit = n
	}
	end := min(start+limit, len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[start:end], next, nil
}

// matchesTags applies tag:K and tag-key filters; a value of "*" matches any value.
func matchesTags(tags map[string]string, filters filterSet) bool {
	for _, f := range filters {
		switch {
		case strings.HasPrefix(f.name, "tag:"):
			v, ok := tags[strings.TrimPrefix(f.name, "tag:")]
			if !ok || !anyMatch(f.values, v) {
				return false
			}
		case f.name == "tag-key":
			found := false
			for k := range tags {
				if anyMatch(f.values, k) {
					found = true
				}
			}
			if !found {
				return false
			}
		}
	}
	return true
}

// anyMatch matches EC2 filter values, where * is a wildcard.
func anyMatch(patterns []string, v string) bool {
	for _, p := range patterns {
		if wildcard(p, v) {
			return true
		}
	}
	return false
}

func wildcard(pattern, v string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == v
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(v, parts[0]) {
		return false
	}
	v = v[len(parts[0]):]
	for i, part := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(v, part)
		}
		idx := strings.Index(v, part)
		if idx < 0 {
			return false
		}
		v = v[idx+len(part):]
	}
	return true
}
