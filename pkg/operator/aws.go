package operator

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	awscloud "github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	awsinterruption "github.com/backstop-sh/backstop/pkg/cloudprovider/aws/interruption"
	"github.com/backstop-sh/backstop/pkg/controllers/disruption"
	"github.com/backstop-sh/backstop/pkg/controllers/interruption"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/pkg/controllers/nodeclaim"
	"github.com/backstop-sh/backstop/pkg/controllers/nodeclass"
	"github.com/backstop-sh/backstop/pkg/controllers/nodepool"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/controllers/static"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// AWS are the clients of the AWS services Backstop calls.
type AWS struct {
	EC2 *ec2.Client
	// SQS reads the interruption queue; nil leaves interruption handling off.
	SQS *sqs.Client
	// EKS describes the cluster nodes join.
	EKS *eks.Client
	// SSM holds the public parameters naming EKS images (AMI aliases) and
	// those ssmParameter terms name.
	SSM *ssm.Client
	// IAM makes the instance profiles of EC2NodeClasses that name a role.
	IAM *iam.Client
}

// NewAWS builds the clients from the default AWS configuration (environment,
// shared files, instance role), the region and the endpoint; the SDK's own
// lines go to log.
func NewAWS(ctx context.Context, o *Options, log logr.Logger) (*AWS, error) {
	load := []func(*config.LoadOptions) error{config.WithRegion(o.AWSRegion)}
	if o.AWSRegion == "" {
		// On EC2, the instance metadata service knows the region.
		load = []func(*config.LoadOptions) error{config.WithEC2IMDSRegion()}
	}
	load = append(load, config.WithLogger(awsLogger(log.WithName("aws"))))
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("no AWS region: set --aws-region or AWS_REGION")
	}
	o.AWSRegion = cfg.Region
	// Every client shares the HTTP client (connection reuse, timeouts) and,
	// for the simulator or a private endpoint, the endpoint.
	cfg.HTTPClient = awscloud.HTTPClient()
	if o.AWSEndpoint != "" {
		cfg.BaseEndpoint = aws.String(o.AWSEndpoint)
	}
	clients := &AWS{EC2: ec2.NewFromConfig(cfg), EKS: eks.NewFromConfig(cfg), SSM: ssm.NewFromConfig(cfg), IAM: iam.NewFromConfig(cfg)}
	if o.InterruptionQueue != "" {
		clients.SQS = sqs.NewFromConfig(cfg)
	}
	return clients, nil
}

// registerAWS wires the AWS cloud provider and the controllers that need it.
func (op *Operator) registerAWS(cfg *rest.Config, clients *AWS) error {
	client := clients.EC2
	o, mgr, clk := op.Options, op.Manager, op.Clock
	version, err := kubernetesMinor(cfg)
	if err != nil {
		return err
	}
	unavailable := awscloud.NewUnavailableOfferings(clk, o.UnavailableOfferingsTTL, crmetrics.Registry)
	offerings, err := awscloud.NewOfferings(client, o.AWSRegion, clk, awscloud.DefaultInstanceTypesTTL, unavailable, awscloud.AllocatableOptions{})
	if err != nil {
		return err
	}
	reservations := awscloud.NewReservations(clk)
	offerings.ExportPrices(crmetrics.Registry).WithReservations(reservations)
	if err := mgr.Add(offerings); err != nil {
		return err
	}
	facts, err := awscloud.NewClusterFacts(clients.EKS, o.ClusterName, o.ClusterEndpoint, o.ClusterCABundle)
	if err != nil {
		return err
	}
	launcher := awscloud.NewLauncher(client, o.ClusterName, offerings, unavailable, op.Process).CountFailures(crmetrics.Registry).JoinsWith(facts)
	cloud := awscloud.New(mgr.GetClient(), launcher, offerings)
	resolver := awscloud.NewResolver(client, clients.SSM, awscloud.NewInstanceProfiles(clients.IAM, o.ClusterName, o.AWSRegion), o.ClusterName, version)
	resolver.Clock, resolver.Reservations = clk, reservations
	if err := nodeclass.New(mgr.GetClient(), resolver, clk).Register(mgr); err != nil {
		return fmt.Errorf("registering the EC2NodeClass controller: %w", err)
	}
	handler, err := op.registerControllers(cloud)
	if err != nil {
		return err
	}
	if o.InterruptionQueue == "" || clients.SQS == nil {
		op.Log.Info("no interruption queue (--interruption-queue): Spot interruptions are noticed only when the instance is gone")
		return nil
	}
	if err := awsinterruption.IndexInstanceIDs(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return err
	}
	return mgr.Add(awsinterruption.NewProcessor(clients.SQS, o.InterruptionQueue, mgr.GetClient(), handler, unavailable, clk,
		awsinterruption.NewMetrics(crmetrics.Registry)))
}

// registerControllers wires the generic controllers onto a cloud provider,
// and returns the interruption handler for the cloud's notice source.
func (op *Operator) registerControllers(cloud cloudprovider.CloudProvider) (*interruption.Controller, error) {
	o, mgr, clk := op.Options, op.Manager, op.Clock
	recorder := op.Recorder
	listPods, err := CachedPods(context.Background(), mgr.GetCache())
	if err != nil {
		return nil, err
	}
	prov := provisioning.New(mgr.GetClient(), recorder, cloud, clk, provisioning.NewMetrics(crmetrics.Registry), provisioning.Options{
		BatchIdleDuration: o.BatchIdleDuration, BatchMaxDuration: o.BatchMaxDuration,
		PreferencePolicy: scheduling.PreferencePolicy(o.PreferencePolicy), Process: op.Process, Early: o.EarlyProvisioning,
		FillEarly: o.EarlyNodeClaims, ListPods: listPods,
	})
	if err := prov.Register(mgr); err != nil {
		return nil, fmt.Errorf("registering the provisioner: %w", err)
	}
	launch := nodeclaim.NewLaunch(mgr.GetClient(), cloud, recorder, clk, prov, nodeclaim.NewLaunchMetrics(crmetrics.Registry))
	launch.Timeout = o.LaunchTimeout
	health := &nodepool.RegistrationHealth{}
	launch.Outcomes = health
	if err := launch.Register(mgr); err != nil {
		return nil, fmt.Errorf("registering the launch controller: %w", err)
	}
	ctx := context.Background()
	if err := nodeclaim.IndexProviderIDs(ctx, mgr); err != nil {
		return nil, err
	}
	if err := nodeclaim.IndexPodsByNode(ctx, mgr); err != nil {
		return nil, err
	}
	lifecycle := metrics.NewLifecycle(crmetrics.Registry)
	metrics.RegisterBuildInfo(crmetrics.Registry)
	if err := mgr.Add(metrics.New(mgr.GetClient(), clk, crmetrics.Registry)); err != nil {
		return nil, err
	}
	registration := nodeclaim.NewRegistration(mgr.GetClient(), recorder, clk, o.RegistrationTTL)
	registration.Metrics = lifecycle
	registration.Outcomes = health
	if err := registration.Register(mgr); err != nil {
		return nil, fmt.Errorf("registering the registration controller: %w", err)
	}
	termination := nodeclaim.NewTermination(mgr.GetClient(), cloud, recorder, clk)
	termination.Metrics = lifecycle
	termination.Reader = mgr.GetAPIReader()
	if err := termination.Register(mgr); err != nil {
		return nil, fmt.Errorf("registering the termination controller: %w", err)
	}
	gc := nodeclaim.NewGarbageCollection(mgr.GetClient(), cloud, clk)
	gc.ReservationLabels = []string{awscloud.LabelCapacityReservationID, awscloud.LabelCapacityReservationType, awscloud.LabelCapacityReservationInterruptible}
	gc.Every = o.GCInterval
	gc.Grace = min(gc.Grace, o.GCInterval)
	if err := mgr.Add(gc); err != nil {
		return nil, err
	}
	poolStatus := nodepool.NewStatus(mgr.GetClient(), cloud)
	poolStatus.Health = health
	if err := poolStatus.Register(mgr); err != nil {
		return nil, fmt.Errorf("registering the NodePool status controller: %w", err)
	}
	fixed := static.New(mgr.GetClient(), mgr.GetAPIReader(), prov, recorder, clk)
	fixed.Metrics = lifecycle
	if err := fixed.Register(mgr); err != nil {
		return nil, fmt.Errorf("registering the static NodePool controller: %w", err)
	}
	d := disruption.New(mgr.GetClient(), recorder, clk)
	d.Every = o.DisruptionInterval
	d.Nominations = prov
	d.Metrics = lifecycle
	if err := mgr.Add(d); err != nil {
		return nil, err
	}
	ret := disruption.NewReplacer(mgr.GetClient(), recorder, clk, prov, disruption.ReturnOptions{
		Enabled: o.ReturnToPreferredPool, Cooldown: o.ReturnCooldown, MaxPerInterval: o.ReturnMaxPerInterval,
		Interval: o.ReturnInterval, MinSaving: o.ReturnMinSaving, Timeout: o.ReturnTimeout,
	}, disruption.NewReturnMetrics(crmetrics.Registry))
	ret.Every = o.DisruptionInterval
	ret.Cloud = cloud
	ret.Lifecycle = lifecycle
	if err := mgr.Add(ret); err != nil {
		return nil, err
	}
	handler := interruption.New(mgr.GetClient(), recorder, clk, prov, interruption.NewMetrics(crmetrics.Registry))
	handler.ReplaceOnRebalance = o.ReplaceOnRebalance
	handler.Lifecycle = lifecycle
	if err := handler.Register(mgr); err != nil {
		return nil, fmt.Errorf("registering the interruption controller: %w", err)
	}
	return handler, nil
}

// kubernetesMinor is the API server's version as "1.36", which picks alias images.
func kubernetesMinor(cfg *rest.Config) (string, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return "", err
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return "", fmt.Errorf("reading the Kubernetes version: %w", err)
	}
	return v.Major + "." + strings.TrimSuffix(v.Minor, "+"), nil
}

// CachedPods lists the pods of the informer cache's store: the cache's own
// objects, which a plan only reads, in a list of pointers. Listing through
// the client copies every pod into a new list (controller-runtime's
// meta.SetList), 0.7 MB of the heap while a 500-pod plan ran. Until the
// informer has synced, and when the informer keeps no store it shows,
// pods are listed through the cache's reader, which waits for it.
func CachedPods(ctx context.Context, c cache.Cache) (func(context.Context) ([]*corev1.Pod, error), error) {
	informer, err := c.GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return nil, fmt.Errorf("the pod informer: %w", err)
	}
	store, ok := informer.(interface{ GetStore() toolscache.Store })
	return func(ctx context.Context) ([]*corev1.Pod, error) {
		if !ok || !informer.HasSynced() {
			return provisioning.ReadPods(ctx, c)
		}
		objects := store.GetStore().List()
		pods := make([]*corev1.Pod, 0, len(objects))
		for _, o := range objects {
			if pod, ok := o.(*corev1.Pod); ok {
				pods = append(pods, pod)
			}
		}
		return pods, nil
	}, nil
}
