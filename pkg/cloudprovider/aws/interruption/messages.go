// Package interruption reads the SQS queue EventBridge feeds with EC2's
// notices about instances and hands each one, for a NodeClaim of this
// cluster, to the generic interruption controller.
package interruption

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/backstop-sh/backstop/pkg/controllers/interruption"
)

// NoOp labels a message that was understood and needs nothing done: a
// state change to running, a Health event that is not a scheduled change.
const NoOp interruption.Kind = "no_op"

// Why a message was dropped without being handled; the reason label of
// backstop_interruption_ignored_messages_total.
const (
	ReasonMalformed   = "malformed"
	ReasonUnknownType = "unknown_type"
	ReasonNotOurs     = "not_ours"
)

// Message is one EventBridge event, understood.
type Message struct {
	// ID is EventBridge's event id.
	ID   string
	Kind interruption.Kind
	// InstanceIDs are the instances concerned; a Health event can name several.
	InstanceIDs []string
	// Time is when the event was emitted.
	Time time.Time
	// ReclaimAt is when a Spot instance is taken back: two minutes after the warning.
	ReclaimAt time.Time
	// Detail says what arrived, for events and logs.
	Detail string
}

// ParseError is a message that cannot be handled; Reason says why.
type ParseError struct {
	Reason string
	Err    error
}

func (e *ParseError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *ParseError) Unwrap() error { return e.Err }

// SpotNotice is how long before the reclaim EC2 warns.
const SpotNotice = 2 * time.Minute

type envelope struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Time       time.Time       `json:"time"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

type ec2Detail struct {
	InstanceID     string `json:"instance-id"`
	InstanceAction string `json:"instance-action"`
	State          string `json:"state"`
}

type healthDetail struct {
	Service           string `json:"service"`
	EventTypeCode     string `json:"eventTypeCode"`
	EventTypeCategory string `json:"eventTypeCategory"`
	AffectedEntities  []struct {
		EntityValue string `json:"entityValue"`
	} `json:"affectedEntities"`
}

// Parse reads an SQS message body holding an EventBridge event.
func Parse(body string) (Message, error) {
	var e envelope
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return Message{}, &ParseError{Reason: ReasonMalformed, Err: fmt.Errorf("not an EventBridge event: %w", err)}
	}
	if e.DetailType == "" || e.Source == "" || len(e.Detail) == 0 {
		return Message{}, &ParseError{Reason: ReasonMalformed, Err: errors.New("an EventBridge event needs source, detail-type and detail")}
	}
	m := Message{ID: e.ID, Time: e.Time}
	switch {
	case e.Source == "aws.ec2" && e.DetailType == "EC2 Spot Instance Interruption Warning":
		d, err := instanceDetail(e)
		if err != nil {
			return Message{}, err
		}
		m.Kind, m.InstanceIDs = interruption.SpotInterruption, []string{d.InstanceID}
		m.ReclaimAt = e.Time.Add(SpotNotice)
		m.Detail = "Spot interruption warning, instance-action " + d.InstanceAction
	case e.Source == "aws.ec2" && e.DetailType == "EC2 Instance Rebalance Recommendation":
		d, err := instanceDetail(e)
		if err != nil {
			return Message{}, err
		}
		m.Kind, m.InstanceIDs, m.Detail = interruption.Rebalance, []string{d.InstanceID}, "rebalance recommendation"
	case e.Source == "aws.ec2" && e.DetailType == "EC2 Instance State-change Notification":
		d, err := instanceDetail(e)
		if err != nil {
			return Message{}, err
		}
		m.InstanceIDs, m.Detail = []string{d.InstanceID}, "instance state "+d.State
		switch d.State {
		case "stopping", "stopped", "shutting-down", "terminated":
			m.Kind = interruption.StateChange
		case "pending", "running":
			m.Kind = NoOp
		default:
			return Message{}, &ParseError{Reason: ReasonMalformed, Err: fmt.Errorf("unknown instance state %q", d.State)}
		}
	case e.Source == "aws.health" && e.DetailType == "AWS Health Event":
		var d healthDetail
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			return Message{}, &ParseError{Reason: ReasonMalformed, Err: fmt.Errorf("AWS Health detail: %w", err)}
		}
		for _, a := range d.AffectedEntities {
			if strings.HasPrefix(a.EntityValue, "i-") {
				m.InstanceIDs = append(m.InstanceIDs, a.EntityValue)
			}
		}
		m.Detail = "AWS Health " + d.EventTypeCode
		m.Kind = NoOp
		if d.Service == "EC2" && d.EventTypeCategory == "scheduledChange" {
			m.Kind = interruption.ScheduledChange
			if len(m.InstanceIDs) == 0 {
				return Message{}, &ParseError{Reason: ReasonMalformed, Err: errors.New("a scheduled change without an affected instance")}
			}
		}
	default:
		return Message{}, &ParseError{Reason: ReasonUnknownType, Err: fmt.Errorf("source %q, detail-type %q is not an event Backstop handles", e.Source, e.DetailType)}
	}
	return m, nil
}

func instanceDetail(e envelope) (ec2Detail, error) {
	var d ec2Detail
	if err := json.Unmarshal(e.Detail, &d); err != nil {
		return d, &ParseError{Reason: ReasonMalformed, Err: fmt.Errorf("%s detail: %w", e.DetailType, err)}
	}
	if !strings.HasPrefix(d.InstanceID, "i-") {
		return d, &ParseError{Reason: ReasonMalformed, Err: fmt.Errorf("%s without an instance-id", e.DetailType)}
	}
	return d, nil
}
