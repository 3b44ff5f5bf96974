package interruption_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	awsinterruption "github.com/backstop-sh/backstop/pkg/cloudprovider/aws/interruption"
	"github.com/backstop-sh/backstop/pkg/controllers/interruption"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

type counting struct{ n atomic.Int64 }

func (c *counting) Handle(context.Context, *v1.NodeClaim, interruption.Notice) error {
	c.n.Add(1)
	return nil
}

// BenchmarkQueue10000 drains 10,000 queued Spot interruption warnings, 100
// for each of 100 NodeClaims: received over the simulator's SQS wire protocol
// ten at a time, parsed, looked up through a real informer cache of a real
// API server, handed to a handler that counts, and deleted.
func BenchmarkQueue10000(b *testing.B) {
	ctrllog.SetLogger(logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := test.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	informers, err := cache.New(env.Config, cache.Options{Scheme: test.Scheme})
	if err != nil {
		b.Fatal(err)
	}
	if err := awsinterruption.IndexInstanceIDs(ctx, informers); err != nil {
		b.Fatal(err)
	}
	go func() { _ = informers.Start(ctx) }()
	kube, err := client.New(env.Config, client.Options{Scheme: test.Scheme, Cache: &client.CacheOptions{Reader: informers}})
	if err != nil {
		b.Fatal(err)
	}
	const claims, messages = 100, 10000
	for i := range claims {
		nc := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i)}, Spec: v1.NodeClaimSpec{
			NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{"spot"}}},
		}}
		if err := kube.Create(ctx, nc); err != nil {
			b.Fatal(err)
		}
		nc.Status.ProviderID = fmt.Sprintf("aws:///us-east-1a/i-%017x", i)
		if err := kube.Status().Update(ctx, nc); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list v1.NodeClaimList
		if err := kube.List(ctx, &list, client.MatchingFields{awsinterruption.InstanceIDIndex: fmt.Sprintf("i-%017x", claims-1)}); err == nil && len(list.Items) == 1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the cache did not see the NodeClaims")
		}
		time.Sleep(50 * time.Millisecond)
	}

	sim, err := ec2sim.New(ec2sim.Config{InterruptionQueue: "q"}, clock.RealClock{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	handler := &counting{}
	p := awsinterruption.NewProcessor(test.SQSClient(srv.URL), "q", kube, handler, nil, clock.RealClock{}, awsinterruption.NewMetrics(prometheus.NewRegistry()))
	p.Wait = 0
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for i := range messages {
			sim.Publish("q", fmt.Sprintf(`{"version":"0","id":"m-%d","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2",`+
				`"time":"2026-11-21T10:00:00Z","region":"us-east-1","resources":[],"detail":{"instance-id":"i-%017x","instance-action":"terminate"}}`, i, i%claims))
		}
		b.StartTimer()
		for sim.QueueDepth("q") > 0 {
			if _, err := p.Poll(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	if got := handler.n.Load(); got != int64(messages*b.N) {
		b.Fatalf("handled %d of %d", got, messages*b.N)
	}
	b.ReportMetric(float64(messages*b.N)/b.Elapsed().Seconds(), "messages/s")
}
