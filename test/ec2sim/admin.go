package ec2sim

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"
)

// Requests returns every API call received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ResetRequests forgets the recorded calls.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// InstanceProfilesVisible reports whether EC2 sees every instance profile as
// it now is: IAM's propagation delay has passed for each.
func (s *Server) InstanceProfilesVisible() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.profiles {
		if s.clock.Now().Before(p.visible) {
			return false
		}
	}
	return true
}

// SetFaults replaces the scripted capacity limits and failures.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Faults = f
}

// Instances returns every instance, launched order.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settle()
	out := make([]Instance, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, *s.instances[id])
	}
	return out
}

// Interrupt gives a running Spot instance its interruption warning, as EC2
// does: the warning goes to the interruption queue, and when the notice
// (SpotNotice, two minutes) is up the instance is terminated and its state
// change published. It reports false for an unknown, non-Spot or ended
// instance.
func (s *Server) Interrupt(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[id]
	if !ok || inst.CapacityType != spot || inst.State != "running" || inst.Interrupted {
		return false
	}
	inst.Interrupted = true
	inst.TerminateAt = s.clock.Now().Add(s.cfg.SpotNotice.Duration)
	// The warning carries no reclaim time: readers take it as two minutes
	// after the event's time. A shorter notice is stamped as if sent that
	// much earlier, so that a reader as strict as AWS reads the right time.
	s.publishAtLocked(inst.TerminateAt.Add(-2*time.Minute), "aws.ec2", "EC2 Spot Instance Interruption Warning", id,
		map[string]string{"instance-id": id, "instance-action": "terminate"})
	return true
}

// Launch starts an instance directly, with the given tags, as another tool
// in the same account would; it returns the instance id.
func (s *Server) Launch(instanceType, zone string, tags map[string]string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.launch(candidate{typeName: instanceType, subnet: s.subnetIn(zone)}, onDemand, tags, "").ID
}

// subnetIn is a subnet of the zone for a launch from outside Backstop: the
// account's last one there, else one made up; locked.
func (s *Server) subnetIn(zone string) SubnetConfig {
	subnet := SubnetConfig{Zone: zone, AvailableIPs: 1}
	for _, sn := range s.cfg.Subnets {
		if sn.Zone == zone {
			subnet = sn
		}
	}
	return subnet
}

// LaunchInGroup starts an instance directly in a placement group (by name),
// as another tool in the same account would; it returns the instance id.
func (s *Server) LaunchInGroup(instanceType, zone, group string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.launch(candidate{typeName: instanceType, subnet: s.subnetIn(zone), template: &launchTemplate{placementGroupName: group}}, onDemand, nil, "").ID
}

// Terminate ends an instance as if someone did it outside Backstop.
func (s *Server) Terminate(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[id]
	if !ok || inst.State == "terminated" {
		return false
	}
	inst.State = "terminated"
	s.freeAddress(inst)
	s.publishStateLocked(id, "terminated")
	return true
}

// serveAdmin is the JSON admin endpoint:
//
//	GET    /admin/requests    recorded API calls
//	DELETE /admin/requests    forget them
//	GET    /admin/instances   instances and their states
//	PUT    /admin/faults      replace capacity limits and failures (a Faults object)
//	POST   /admin/interrupt?instance=i-…   interrupt a Spot instance
//	POST   /admin/terminate?instance=i-…   terminate an instance behind Backstop's back
//	POST   /admin/rebalance?instance=i-…   recommend rebalancing a Spot instance
//	POST   /admin/retire?instance=i-…&in=72h   schedule an instance's retirement (AWS Health)
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.URL.Path == "/admin/requests" && r.Method == http.MethodGet:
		reply(http.StatusOK, s.Requests())
	case r.URL.Path == "/admin/requests" && r.Method == http.MethodDelete:
		s.ResetRequests()
		reply(http.StatusOK, map[string]string{"status": "cleared"})
	case r.URL.Path == "/admin/instances" && r.Method == http.MethodGet:
		reply(http.StatusOK, s.Instances())
	case r.URL.Path == "/admin/faults" && r.Method == http.MethodPut:
		var f Faults
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			reply(http.StatusBadRequest, map[string]string{"error": "faults: " + err.Error()})
			return
		}
		s.SetFaults(f)
		reply(http.StatusOK, f)
	case r.URL.Path == "/admin/interrupt" && r.Method == http.MethodPost:
		id := r.URL.Query().Get("instance")
		if !s.Interrupt(id) {
			reply(http.StatusNotFound, map[string]string{"error": "no running Spot instance " + id})
			return
		}
		reply(http.StatusOK, map[string]string{"status": "interrupted", "instance": id})
	case r.URL.Path == "/admin/terminate" && r.Method == http.MethodPost:
		id := r.URL.Query().Get("instance")
		if !s.Terminate(id) {
			reply(http.StatusNotFound, map[string]string{"error": "no live instance " + id})
			return
		}
		reply(http.StatusOK, map[string]string{"status": "terminated", "instance": id})
	case r.URL.Path == "/admin/rebalance" && r.Method == http.MethodPost:
		id := r.URL.Query().Get("instance")
		if !s.Rebalance(id) {
			reply(http.StatusNotFound, map[string]string{"error": "no running Spot instance " + id})
			return
		}
		reply(http.StatusOK, map[string]string{"status": "rebalance recommended", "instance": id})
	case r.URL.Path == "/admin/retire" && r.Method == http.MethodPost:
		id := r.URL.Query().Get("instance")
		in, err := time.ParseDuration(r.URL.Query().Get("in"))
		if err != nil {
			reply(http.StatusBadRequest, map[string]string{"error": "in: a duration such as 72h, the time until the retirement: " + err.Error()})
			return
		}
		if !s.ScheduleRetirement(id, s.clock.Now().Add(in)) {
			reply(http.StatusNotFound, map[string]string{"error": "no running instance " + id})
			return
		}
		reply(http.StatusOK, map[string]string{"status": "retirement scheduled", "instance": id})
	default:
		reply(http.StatusNotFound, map[string]string{"error": "unknown admin call " + r.Method + " " + r.URL.Path})
	}
}

func sortStrings(s []string) { sort.Strings(s) }

// Image returns an image of the account by id.
func (s *Server) Image(id string) (ImageConfig, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, img := range s.cfg.Images {
		if img.ID == id {
			return img, true
		}
	}
	return ImageConfig{}, false
}
