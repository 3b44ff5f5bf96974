package interruption_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	awsinterruption "github.com/backstop-sh/backstop/pkg/cloudprovider/aws/interruption"
	"github.com/backstop-sh/backstop/pkg/controllers/interruption"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

type template struct {
	Resources map[string]struct {
		Type       string         `json:"Type"`
		Properties map[string]any `json:"Properties"`
	} `json:"Resources"`
}

func readTemplate(t *testing.T) template {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(test.Root, "charts", "backstop", "cloudformation", "interruption.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tpl template
	if err := yaml.Unmarshal(data, &tpl); err != nil {
		t.Fatalf("the template is not plain YAML: %v", err)
	}
	return tpl
}

// The shipped EventBridge rules send the queue every kind of event Backstop
// acts on, and nothing it would drop as unknown.
func TestTemplateRulesFeedWhatTheProcessorHandles(t *testing.T) {
	details := map[string]string{
		"aws.health": `{"service":"EC2","eventTypeCategory":"scheduledChange","eventTypeCode":"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED","affectedEntities":[{"entityValue":"i-1"}]}`,
		"aws.ec2":    `{"instance-id":"i-1","instance-action":"terminate","state":"stopping"}`,
	}
	kinds := map[interruption.Kind]bool{}
	for name, r := range readTemplate(t).Resources {
		if r.Type != "AWS::Events::Rule" {
			continue
		}
		pattern, _ := r.Properties["EventPattern"].(map[string]any)
		sources, _ := pattern["source"].([]any)
		types, _ := pattern["detail-type"].([]any)
		if len(sources) != 1 || len(types) != 1 {
			t.Fatalf("rule %s: one source and one detail-type expected, got %v", name, pattern)
		}
		source, detailType := fmt.Sprint(sources[0]), fmt.Sprint(types[0])
		body := fmt.Sprintf(`{"version":"0","id":"x","source":%q,"detail-type":%q,"time":"2026-11-21T10:00:00Z","detail":%s}`, source, detailType, details[source])
		m, err := awsinterruption.Parse(body)
		if err != nil {
			t.Fatalf("rule %s sends %s/%s, which Backstop drops: %v", name, source, detailType, err)
		}
		kinds[m.Kind] = true
		targets, _ := r.Properties["Targets"].([]any)
		if len(targets) != 1 || !strings.Contains(fmt.Sprint(targets[0]), "InterruptionQueue") {
			t.Fatalf("rule %s does not target the interruption queue: %v", name, targets)
		}
	}
	for _, k := range []interruption.Kind{interruption.SpotInterruption, interruption.Rebalance, interruption.ScheduledChange, interruption.StateChange} {
		if !kinds[k] {
			t.Errorf("no rule sends %s events", k)
		}
	}
}

// The controller policy allows every SQS call the processor makes.
func TestTemplatePolicyAllowsTheProcessorsCalls(t *testing.T) {
	var allowed []string
	for _, r := range readTemplate(t).Resources {
		if r.Type != "AWS::IAM::ManagedPolicy" {
			continue
		}
		doc, _ := r.Properties["PolicyDocument"].(map[string]any)
		statements, _ := doc["Statement"].([]any)
		for _, s := range statements {
			actions, _ := s.(map[string]any)["Action"].([]any)
			for _, a := range actions {
				allowed = append(allowed, fmt.Sprint(a))
			}
		}
	}
	sim, p := processor(t, ec2sim.Config{InterruptionQueue: "my-cluster"}, "my-cluster")
	sim.Publish("my-cluster", `{"version":"0","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","time":"2026-11-21T10:00:00Z","detail":{"instance-id":"i-1","state":"running"}}`)
	if _, err := p.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := map[string]bool{}
	for _, r := range sim.Requests() {
		calls[r.Action] = true
	}
	for _, action := range []string{"sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage"} {
		if !calls[action] {
			t.Errorf("the processor did not call %s; the test needs updating", action)
		}
	}
	for action := range calls {
		found := false
		for _, a := range allowed {
			found = found || a == action
		}
		if !found {
			t.Errorf("the processor calls %s, which the shipped policy does not allow (it allows %v)", action, allowed)
		}
	}
}
