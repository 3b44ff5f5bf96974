package interruption_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	awsinterruption "github.com/backstop-sh/backstop/pkg/cloudprovider/aws/interruption"
	"github.com/backstop-sh/backstop/pkg/controllers/interruption"
)

// The events follow the samples in the EC2 and AWS Health documentation.
const (
	spotWarning = `{"version":"0","id":"12345678-1234-1234-1234-123456789012","detail-type":"EC2 Spot Instance Interruption Warning",
"source":"aws.ec2","account":"123456789012","time":"2026-11-21T10:00:00Z","region":"us-east-2",
"resources":["arn:aws:ec2:us-east-2:123456789012:instance/i-1234567890abcdef0"],
"detail":{"instance-id":"i-1234567890abcdef0","instance-action":"terminate"}}`
	rebalance = `{"version":"0","id":"12345678-1234-1234-1234-123456789012","detail-type":"EC2 Instance Rebalance Recommendation",
"source":"aws.ec2","account":"123456789012","time":"2026-11-21T10:00:00Z","region":"us-east-2",
"resources":["arn:aws:ec2:us-east-2:123456789012:instance/i-1234567890abcdef0"],"detail":{"instance-id":"i-1234567890abcdef0"}}`
	stateChange = `{"version":"0","id":"7bf73129-1428-4cd3-a780-95db273d1602","detail-type":"EC2 Instance State-change Notification",
"source":"aws.ec2","account":"123456789012","time":"2026-11-21T10:00:00Z","region":"us-east-1",
"resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],"detail":{"instance-id":"i-abcd1111","state":"%s"}}`
	health = `{"version":"0","id":"121345678-1234-1234-1234-123456789012","detail-type":"AWS Health Event","source":"aws.health",
"account":"123456789012","time":"2026-11-21T10:00:00Z","region":"us-west-2","resources":[],
"detail":{"eventArn":"arn:aws:health:us-west-2::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED_ABC123",
"service":"EC2","eventTypeCode":"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED","eventTypeCategory":"%s",
"startTime":"Sat, 28 Nov 2026 10:00:00 GMT","eventDescription":[{"language":"en_US","latestDescription":"retirement"}],
"affectedEntities":[{"entityValue":"i-abcd1111"},{"entityValue":"i-abcd2222"}]}}`
)

func TestParse(t *testing.T) {
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		body      string
		kind      interruption.Kind
		instances []string
		reclaimAt time.Time
		reason    string // a ParseError's reason, when it must fail
	}{
		{name: "spot interruption warning", body: spotWarning, kind: interruption.SpotInterruption,
			instances: []string{"i-1234567890abcdef0"}, reclaimAt: at.Add(2 * time.Minute)},
		{name: "rebalance recommendation", body: rebalance, kind: interruption.Rebalance, instances: []string{"i-1234567890abcdef0"}},
		{name: "state change to stopping", body: fmt.Sprintf(stateChange, "stopping"), kind: interruption.StateChange, instances: []string{"i-abcd1111"}},
		{name: "state change to stopped", body: fmt.Sprintf(stateChange, "stopped"), kind: interruption.StateChange, instances: []string{"i-abcd1111"}},
		{name: "state change to shutting-down", body: fmt.Sprintf(stateChange, "shutting-down"), kind: interruption.StateChange, instances: []string{"i-abcd1111"}},
		{name: "state change to terminated", body: fmt.Sprintf(stateChange, "terminated"), kind: interruption.StateChange, instances: []string{"i-abcd1111"}},
		{name: "state change to running needs nothing", body: fmt.Sprintf(stateChange, "running"), kind: awsinterruption.NoOp, instances: []string{"i-abcd1111"}},
		{name: "scheduled retirement, every affected instance", body: fmt.Sprintf(health, "scheduledChange"), kind: interruption.ScheduledChange,
			instances: []string{"i-abcd1111", "i-abcd2222"}},
		{name: "a Health issue that is not a scheduled change", body: fmt.Sprintf(health, "issue"), kind: awsinterruption.NoOp, instances: []string{"i-abcd1111", "i-abcd2222"}},
		{name: "not JSON", body: `{"detail-type": "EC2 Spot`, reason: awsinterruption.ReasonMalformed},
		{name: "JSON but not an event", body: `{"hello":"world"}`, reason: awsinterruption.ReasonMalformed},
		{name: "an S3 test event", body: `{"Service":"Amazon S3","Event":"s3:TestEvent"}`, reason: awsinterruption.ReasonMalformed},
		{name: "spot warning without instance", body: `{"detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","time":"2026-11-21T10:00:00Z","detail":{"instance-action":"terminate"}}`,
			reason: awsinterruption.ReasonMalformed},
		{name: "spot warning with a detail of the wrong shape", body: `{"detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","time":"2026-11-21T10:00:00Z","detail":["i-1"]}`,
			reason: awsinterruption.ReasonMalformed},
		{name: "a state nobody knows", body: fmt.Sprintf(stateChange, "melting"), reason: awsinterruption.ReasonMalformed},
		{name: "unknown detail-type", body: `{"version":"0","detail-type":"EC2 AMI State Change","source":"aws.ec2","time":"2026-11-21T10:00:00Z","detail":{"ImageId":"ami-1"}}`,
			reason: awsinterruption.ReasonUnknownType},
		{name: "known detail-type from another source", body: `{"detail-type":"EC2 Spot Instance Interruption Warning","source":"my.app","time":"2026-11-21T10:00:00Z","detail":{"instance-id":"i-1"}}`,
			reason: awsinterruption.ReasonUnknownType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := awsinterruption.Parse(tc.body)
			if tc.reason != "" {
				var perr *awsinterruption.ParseError
				if !errors.As(err, &perr) || perr.Reason != tc.reason {
					t.Fatalf("want a %s error, got %v (%+v)", tc.reason, err, m)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind != tc.kind {
				t.Errorf("kind %q, want %q", m.Kind, tc.kind)
			}
			if len(m.InstanceIDs) != len(tc.instances) {
				t.Fatalf("instances %v, want %v", m.InstanceIDs, tc.instances)
			}
			for i := range tc.instances {
				if m.InstanceIDs[i] != tc.instances[i] {
					t.Errorf("instances %v, want %v", m.InstanceIDs, tc.instances)
				}
			}
			if !m.ReclaimAt.Equal(tc.reclaimAt) {
				t.Errorf("reclaim at %s, want %s", m.ReclaimAt, tc.reclaimAt)
			}
		})
	}
}
