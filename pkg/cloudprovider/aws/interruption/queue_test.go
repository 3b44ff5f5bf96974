package interruption_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	awsinterruption "github.com/backstop-sh/backstop/pkg/cloudprovider/aws/interruption"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

func processor(t *testing.T, cfg ec2sim.Config, queue string) (*ec2sim.Server, *awsinterruption.Processor) {
	t.Helper()
	sim, err := ec2sim.New(cfg, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	p := awsinterruption.NewProcessor(test.SQSClient(srv.URL), queue, nil, nil, nil, clock.RealClock{}, awsinterruption.NewMetrics(prometheus.NewRegistry()))
	p.Wait = 0
	return sim, p
}

// A queue that is missing or not permitted fails with the AWS code and the
// request id, and the processor says what to do about it.
func TestQueueErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    ec2sim.Config
		queue  string
		code   string
		advice string
	}{
		{name: "no such queue", cfg: ec2sim.Config{InterruptionQueue: "real-queue"}, queue: "typo-queue",
			code: "AWS.SimpleQueueService.NonExistentQueue", advice: "create it with its EventBridge rules"},
		{name: "not permitted", cfg: ec2sim.Config{InterruptionQueue: "q", Faults: ec2sim.Faults{SQSAccessDenied: true}}, queue: "q",
			code: "AccessDenied", advice: "allow sqs:GetQueueUrl, sqs:ReceiveMessage and sqs:DeleteMessage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, p := processor(t, tc.cfg, tc.queue)
			_, err := p.Poll(context.Background())
			if err == nil {
				t.Fatal("no error")
			}
			cause := cloudprovider.CauseOf(err)
			if cause.Code != tc.code || cause.RequestID == "" {
				t.Fatalf("code %q request id %q, want %q: %v", cause.Code, cause.RequestID, tc.code, err)
			}
			if advice := awsinterruption.Advice(cause.Code); !strings.Contains(advice, tc.advice) {
				t.Fatalf("advice %q does not say %q", advice, tc.advice)
			}
		})
	}
}

// An empty queue answers at once with nothing when the wait is zero; a
// message published while a long poll waits is answered at once.
func TestLongPoll(t *testing.T) {
	sim, p := processor(t, ec2sim.Config{InterruptionQueue: "q"}, "q")
	n, err := p.Poll(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("empty queue: %d messages, %v", n, err)
	}
	p.Wait = 20 * time.Second
	go func() {
		time.Sleep(200 * time.Millisecond)
		sim.Publish("q", `{"version":"0","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","time":"2026-11-21T10:00:00Z","detail":{"instance-id":"i-1","state":"running"}}`)
	}()
	start := time.Now()
	n, err = p.Poll(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("long poll: %d messages, %v", n, err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("the long poll waited %s for a message published after 200ms", time.Since(start))
	}
	if sim.QueueDepth("q") != 0 {
		t.Fatal("a running-state message needs nothing and is deleted")
	}
}
