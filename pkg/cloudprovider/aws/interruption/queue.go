package interruption

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	awscloud "github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/controllers/interruption"
)

// InstanceIDIndex indexes NodeClaims by the EC2 instance id ending their provider id.
const InstanceIDIndex = "backstop.sh/instance-id"

// IndexInstanceIDs registers InstanceIDIndex.
func IndexInstanceIDs(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &v1.NodeClaim{}, InstanceIDIndex, func(o client.Object) []string {
		if id := instanceID(o.(*v1.NodeClaim).Status.ProviderID); id != "" {
			return []string{id}
		}
		return nil
	})
}

// instanceID is the last part of aws:///us-east-1a/i-0123.
func instanceID(providerID string) string {
	id := providerID[strings.LastIndex(providerID, "/")+1:]
	if !strings.HasPrefix(id, "i-") {
		return ""
	}
	return id
}

// Handler acts on a notice for a NodeClaim.
type Handler interface {
	Handle(ctx context.Context, claim *v1.NodeClaim, n interruption.Notice) error
}

// Metrics of the queue; the karpenter_* names and labels are Karpenter's.
type Metrics struct {
	received *prometheus.CounterVec
	deleted  prometheus.Counter
	age      prometheus.Histogram
	ignored  *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "karpenter_interruption_received_messages_total", Help: "Messages received from the interruption queue, by message_type.",
		}, []string{"message_type"}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "karpenter_interruption_deleted_messages_total", Help: "Messages deleted from the interruption queue.",
		}),
		age: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "karpenter_interruption_message_queue_duration_seconds", Help: "Time from a message's arrival in the queue to its handling.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backstop_interruption_ignored_messages_total", Help: "Messages deleted without action, by reason: malformed, unknown_type, not_ours.",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backstop_interruption_queue_errors_total", Help: "Failed calls to the interruption queue, by AWS error code.",
		}, []string{"code"}),
	}
	reg.MustRegister(m.received, m.deleted, m.age, m.ignored, m.errors)
	return m
}

// Processor long-polls the queue and handles its messages.
type Processor struct {
	sqs         *sqs.Client
	queue       string
	kube        client.Client
	handler     Handler
	unavailable *awscloud.UnavailableOfferings
	clock       clock.Clock
	metrics     *Metrics

	// Workers bound the messages handled at once.
	Workers int
	// Wait is the long poll (20 s, SQS's longest).
	Wait time.Duration
	// Backoff and MaxBackoff space the retries after a failed receive.
	Backoff, MaxBackoff time.Duration

	url string
}

// NewProcessor returns a processor of the named queue (a name or a URL).
func NewProcessor(client *sqs.Client, queue string, kube client.Client, h Handler, unavailable *awscloud.UnavailableOfferings, clk clock.Clock, m *Metrics) *Processor {
	p := &Processor{sqs: client, queue: queue, kube: kube, handler: h, unavailable: unavailable, clock: clk, metrics: m,
		Workers: 10, Wait: 20 * time.Second, Backoff: time.Second, MaxBackoff: time.Minute}
	if strings.HasPrefix(queue, "https://") {
		p.url = queue
	}
	return p
}

// NeedLeaderElection is true: one replica handles each message.
func (p *Processor) NeedLeaderElection() bool { return true }

// Start polls until ctx ends. A failed receive is logged with what to do and
// tried again with backoff; it never stops the loop.
func (p *Processor) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("interruption").WithValues("queue", p.queue)
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.clock.After(wait):
		}
		_, err := p.Poll(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			wait = min(max(2*wait, p.Backoff), p.MaxBackoff)
			cause := cloudprovider.CauseOf(err)
			p.metrics.errors.WithLabelValues(cause.Code).Inc()
			logger.Error(err, "reading the interruption queue failed; "+Advice(cause.Code), "error-code", cause.Code,
				"aws-request-id", cause.RequestID, "retry-in", wait.String())
		default:
			wait = 0
		}
	}
}

// Advice says what a user does about a queue error with this AWS code.
func Advice(code string) string {
	switch code {
	case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist":
		return "the queue does not exist: create it with its EventBridge rules (see the README), or fix --interruption-queue"
	case "AccessDenied", "AccessDeniedException":
		return "the controller's role may not use the queue: allow sqs:GetQueueUrl, sqs:ReceiveMessage and sqs:DeleteMessage on it"
	case "RequestThrottled", "ThrottlingException":
		return "SQS throttled the controller; backing off"
	}
	return "trying again"
}

// Poll receives one batch, handles it and reports how many messages it held.
func (p *Processor) Poll(ctx context.Context) (int, error) {
	if p.url == "" {
		out, err := p.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(p.queue)})
		if err != nil {
			return 0, queueError("GetQueueUrl", err)
		}
		p.url = aws.ToString(out.QueueUrl)
	}
	out, err := p.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(p.url), MaxNumberOfMessages: 10, WaitTimeSeconds: int32(p.Wait / time.Second),
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameSentTimestamp},
	})
	if err != nil {
		if noSuchQueue(cloudprovider.CauseOf(queueError("", err)).Code) {
			// Deleted and perhaps made again: ask for its URL next time.
			p.url = ""
		}
		return 0, queueError("ReceiveMessage", err)
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, max(p.Workers, 1))
	for i := range out.Messages {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			p.handle(ctx, &out.Messages[i])
		}()
	}
	wg.Wait()
	return len(out.Messages), nil
}

func queueError(op string, err error) error { return awscloud.Retryable(op, err) }

func noSuchQueue(code string) bool {
	return code == "AWS.SimpleQueueService.NonExistentQueue" || code == "QueueDoesNotExist"
}

// handle acts on one message and deletes it; a message whose action failed
// is kept, and SQS gives it again after its visibility timeout.
func (p *Processor) handle(ctx context.Context, msg *sqstypes.Message) {
	logger := log.FromContext(ctx).WithName("interruption").WithValues("message-id", aws.ToString(msg.MessageId))
	if sent, err := strconv.ParseInt(msg.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		p.metrics.age.Observe(p.clock.Since(time.UnixMilli(sent)).Seconds())
	}
	m, err := Parse(aws.ToString(msg.Body))
	var perr *ParseError
	switch {
	case errors.As(err, &perr):
		p.metrics.ignored.WithLabelValues(perr.Reason).Inc()
		logger.Info("dropping a message Backstop cannot act on", "reason", perr.Reason, "error", perr.Err.Error())
		p.delete(ctx, msg)
		return
	case err != nil:
		logger.Error(err, "parsing an interruption message")
		p.delete(ctx, msg)
		return
	}
	p.metrics.received.WithLabelValues(string(m.Kind)).Inc()
	if m.Kind == NoOp {
		p.delete(ctx, msg)
		return
	}
	for _, id := range m.InstanceIDs {
		if err := p.act(ctx, m, id); err != nil {
			logger.Error(err, "handling an interruption message; it is received again after its visibility timeout", "instance", id, "kind", m.Kind)
			return
		}
	}
	p.delete(ctx, msg)
}

// act handles the message for one instance.
func (p *Processor) act(ctx context.Context, m Message, id string) error {
	var claims v1.NodeClaimList
	if err := p.kube.List(ctx, &claims, client.MatchingFields{InstanceIDIndex: id}); err != nil {
		return err
	}
	if len(claims.Items) == 0 {
		p.metrics.ignored.WithLabelValues(ReasonNotOurs).Inc()
		return nil
	}
	for i := range claims.Items {
		claim := &claims.Items[i]
		log.FromContext(ctx).Info("interruption notice", "nodeclaim", claim.Name, "instance", id, "kind", m.Kind, "detail", m.Detail)
		if m.Kind == interruption.SpotInterruption && p.unavailable != nil {
			// The pool is being reclaimed: do not launch the replacement there.
			p.unavailable.Mark(awscloud.Unavailable{Scope: awscloud.ScopeOffering, CapacityType: v1.CapacityTypeSpot,
				InstanceType: claim.Labels[corev1.LabelInstanceTypeStable], Zone: claim.Labels[corev1.LabelTopologyZone], Code: "SpotInterruptionWarning"})
		}
		if err := p.handler.Handle(ctx, claim, interruption.Notice{Kind: m.Kind, ReclaimAt: m.ReclaimAt, Detail: m.Detail}); err != nil {
			return fmt.Errorf("nodeclaim %s: %w", claim.Name, err)
		}
	}
	return nil
}

func (p *Processor) delete(ctx context.Context, msg *sqstypes.Message) {
	_, err := p.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(p.url), ReceiptHandle: msg.ReceiptHandle})
	if err != nil {
		// Handled already: received again, it is handled again, which does
		// nothing more.
		log.FromContext(ctx).Error(queueError("DeleteMessage", err), "deleting a handled interruption message")
		return
	}
	p.metrics.deleted.Inc()
}
