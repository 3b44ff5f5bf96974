package test

import (
	"net/http/httptest"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"k8s.io/utils/clock"

	awscloud "github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/operator"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

// simulatorConfig is the controller's AWS configuration with the
// simulator's endpoint and retries that back off for milliseconds rather
// than seconds.
func simulatorConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDSIMULATOR", "secret", ""),
		Retryer:      func() aws.Retryer { return retry.AddWithMaxBackoffDelay(retry.NewStandard(), 5*time.Millisecond) },
		HTTPClient:   awscloud.HTTPClient(),
	}
}

// EC2Client is the SDK's EC2 client as the controller builds it, pointed at the simulator.
func EC2Client(endpoint string) *ec2.Client { return ec2.NewFromConfig(simulatorConfig(endpoint)) }

// SQSClient is the SDK's SQS client as the controller builds it, pointed at the simulator.
func SQSClient(endpoint string) *sqs.Client { return sqs.NewFromConfig(simulatorConfig(endpoint)) }

// EKSClient is the SDK's EKS client as the controller builds it, pointed at the simulator.
func EKSClient(endpoint string) *eks.Client { return eks.NewFromConfig(simulatorConfig(endpoint)) }

// SSMClient is the SDK's SSM client as the controller builds it, pointed at the simulator.
func SSMClient(endpoint string) *ssm.Client { return ssm.NewFromConfig(simulatorConfig(endpoint)) }

// IAMClient is the SDK's IAM client as the controller builds it, pointed at the simulator.
func IAMClient(endpoint string) *iam.Client { return iam.NewFromConfig(simulatorConfig(endpoint)) }

// AWSClients are the controller's clients pointed at the simulator.
func AWSClients(endpoint string) *operator.AWS {
	return &operator.AWS{EC2: EC2Client(endpoint), SQS: SQSClient(endpoint), EKS: EKSClient(endpoint), SSM: SSMClient(endpoint), IAM: IAMClient(endpoint)}
}

// NewResolver is the EC2NodeClass resolver as the controller builds it for
// a cluster, pointed at the simulator (region us-east-1, Kubernetes 1.36).
func NewResolver(endpoint, cluster string) *awscloud.Resolver {
	return awscloud.NewResolver(EC2Client(endpoint), SSMClient(endpoint), awscloud.NewInstanceProfiles(IAMClient(endpoint), cluster, "us-east-1"), cluster, "1.36")
}

// ShippedPolicy is the path of the controller's IAM policy in the repo:
// every simulator a test starts holds requests to it unless the config
// names another (ec2sim.Config.Policy or PolicyFile).
var ShippedPolicy = filepath.Join(Root, "charts", "backstop", "iam", "controller-policy.json")

// StartEC2Simulator serves a simulator over HTTP for one spec and returns it
// with a client pointed at it. It enforces the shipped controller policy.
func StartEC2Simulator(cfg ec2sim.Config, clk clock.Clock) (*ec2sim.Server, *ec2.Client, string) {
	if cfg.Policy == nil && cfg.PolicyFile == "" {
		cfg.PolicyFile = ShippedPolicy
	}
	if cfg.IAMPropagation.Duration == 0 {
		// Unit tests call EC2 right after IAM, with no controller to try
		// again; the whole-controller suites keep the simulator's delay.
		cfg.IAMPropagation.Duration = -1
	}
	sim, err := ec2sim.New(cfg, clk)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	srv := httptest.NewServer(sim)
	ginkgo.DeferCleanup(srv.Close)
	return sim, EC2Client(srv.URL), srv.URL
}

// InstanceProfileName is the instance profile Backstop makes for a class of
// a cluster in us-east-1.
func InstanceProfileName(cluster, class string) string {
	return awscloud.NewInstanceProfiles(nil, cluster, "us-east-1").Name(class)
}

// Launch is the launch path as the controller builds it for a cluster,
// pointed at the simulator: region us-east-1, real clock, unavailable
// offerings kept 3 minutes, instance types 5.
type Launch struct {
	Launcher    *awscloud.Launcher
	Offerings   *awscloud.Offerings
	Unavailable *awscloud.UnavailableOfferings
	Facts       *awscloud.ClusterFacts
	// Reservations count room in capacity reservations; a resolver given
	// them (Resolver.Reservations) fills them.
	Reservations *awscloud.Reservations
}

// NewLaunch builds the launch path; process names the controller process
// the launcher is (claims it made are launched without asking EC2 first).
func NewLaunch(endpoint, cluster, process string) Launch {
	client := EC2Client(endpoint)
	facts, err := awscloud.NewClusterFacts(EKSClient(endpoint), cluster, "", "")
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	unavailable := awscloud.NewUnavailableOfferings(clock.RealClock{}, 3*time.Minute, nil)
	offerings, err := awscloud.NewOfferings(client, "us-east-1", clock.RealClock{}, 5*time.Minute, unavailable, awscloud.AllocatableOptions{})
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	reservations := awscloud.NewReservations(clock.RealClock{})
	offerings.WithReservations(reservations)
	return Launch{Launcher: awscloud.NewLauncher(client, cluster, offerings, unavailable, process).JoinsWith(facts),
		Offerings: offerings, Unavailable: unavailable, Facts: facts, Reservations: reservations}
}
