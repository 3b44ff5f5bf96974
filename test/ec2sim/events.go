package ec2sim

import (
	"encoding/json"
	"fmt"
	"time"
)

// accountID is the simulated account.
const accountID = "123456789012"

// event is an EventBridge envelope as its rules deliver it to SQS.
type event struct {
	Version    string   `json:"version"`
	ID         string   `json:"id"`
	DetailType string   `json:"detail-type"`
	Source     string   `json:"source"`
	Account    string   `json:"account"`
	Time       string   `json:"time"`
	Region     string   `json:"region"`
	Resources  []string `json:"resources"`
	Detail     any      `json:"detail"`
}

// publishEventLocked delivers an event about an instance to the interruption
// queue, as the EventBridge rules of an install do; without a queue it goes
// nowhere. Locked.
func (s *Server) publishEventLocked(source, detailType, instanceID string, detail any) {
	s.publishAtLocked(s.clock.Now(), source, detailType, instanceID, detail)
}

// publishAtLocked publishes an event stamped with the given time; locked.
func (s *Server) publishAtLocked(at time.Time, source, detailType, instanceID string, detail any) {
	q := s.queues[s.cfg.InterruptionQueue]
	if q == nil {
		return
	}
	s.seq++
	e := event{Version: "0", ID: fmt.Sprintf("%08x-1111-4222-8333-%012x", s.seq, s.seq), DetailType: detailType, Source: source,
		Account: accountID, Time: at.UTC().Format(time.RFC3339), Region: s.cfg.Region, Detail: detail,
		Resources: []string{fmt.Sprintf("arn:aws:ec2:%s:%s:instance/%s", s.cfg.Region, accountID, instanceID)}}
	body, _ := json.Marshal(e)
	s.publishLocked(q, string(body))
}

func (s *Server) publishStateLocked(id, state string) {
	s.publishEventLocked("aws.ec2", "EC2 Instance State-change Notification", id, map[string]string{"instance-id": id, "state": state})
}

// Rebalance publishes a rebalance recommendation for a running Spot instance.
func (s *Server) Rebalance(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[id]
	if !ok || inst.CapacityType != spot || inst.State != "running" {
		return false
	}
	s.publishEventLocked("aws.ec2", "EC2 Instance Rebalance Recommendation", id, map[string]string{"instance-id": id})
	return true
}

// ScheduleRetirement publishes an AWS Health scheduled-change event retiring
// a running instance at the given time.
func (s *Server) ScheduleRetirement(id string, at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[id]
	if !ok || inst.State != "running" {
		return false
	}
	s.publishEventLocked("aws.health", "AWS Health Event", id, map[string]any{
		"eventArn":          fmt.Sprintf("arn:aws:health:%s::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED_%s", s.cfg.Region, id),
		"service":           "EC2",
		"eventTypeCode":     "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
		"eventTypeCategory": "scheduledChange",
		"startTime":         at.UTC().Format(time.RFC1123),
		"eventDescription":  []map[string]string{{"language": "en_US", "latestDescription": "EC2 has detected degradation of the underlying hardware hosting your instance."}},
		"affectedEntities":  []map[string]string{{"entityValue": id}},
	})
	return true
}
