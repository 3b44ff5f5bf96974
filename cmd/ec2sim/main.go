// Command ec2sim serves the EC2 simulator: an EC2 Query API endpoint (and
// SQS, SSM, EKS and IAM) for the unmodified aws-sdk-go-v2 clients, with
// scripted capacity and failures, holding every request to the controller's
// IAM policy.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"

	"k8s.io/utils/clock"

	"github.com/backstop-sh/backstop/test/ec2sim"
)

const usage = `ec2sim serves a simulated EC2 API.

  go run ./cmd/ec2sim --listen 127.0.0.1:4566 [--config FILE]

Point an aws-sdk-go-v2 EC2 client at it with BaseEndpoint http://127.0.0.1:4566
(Backstop: --aws-endpoint). Any credentials work.

Config file (YAML or JSON; every field optional):

  region: us-east-1                 # zones default to <region>a, b and c
  zones: [us-east-1a, us-east-1b]
  clusterTag: my-cluster            # karpenter.sh/discovery tag of the default subnets and security group
  instanceTypes: [m5.large, c5.large]   # limit the 1,363-type catalog
  subnets: [{id: subnet-1, zone: us-east-1a, availableIPs: 100, tags: {k: v}}]
  securityGroups: [{id: sg-1, name: nodes, tags: {k: v}}]
  images: [{id: ami-1, name: my-image, owner: self, architecture: x86_64}]
  spotPriceSeed: 42                 # Spot prices: a stable 25-45% of on-demand per type and zone
  iamRoles: [KarpenterNodeRole-my-cluster]    # roles an instance profile may hold (this one by default)
  instanceProfiles: [{name: my-profile, role: KarpenterNodeRole-my-cluster}]
  policyFile: controller-policy.json   # the controller role's IAM policy, relative to the config file
  faults:
    capacity:                       # max running instances; past it: InsufficientInstanceCapacity
    - {instanceType: m5.large, zone: us-east-1a, capacityType: spot, max: 3}
    unfulfillable: [{instanceType: c5.large}]   # UnfulfillableCapacity
    spotVCPUQuota: 64               # MaxSpotInstanceCountExceeded past it
    onDemandVCPUQuota: 128          # VcpuLimitExceeded past it
    noSpotServiceLinkedRole: true   # AuthFailure.ServiceLinkedRoleCreationNotPermitted for Spot
    throttleEvery: 10               # every 10th request: RequestLimitExceeded
    throttleNext: 2                 # the next 2 requests: RequestLimitExceeded
    serverErrorEvery: 50            # every 50th request: 500 InternalError
    latency: 50ms                   # delay every answer

Admin endpoint (JSON):

  GET    /admin/requests                  every API call received, in order
  DELETE /admin/requests                  forget them
  GET    /admin/instances                 instances and their states
  PUT    /admin/faults                    replace the faults section at run time
  POST   /admin/interrupt?instance=i-...  two-minute Spot interruption notice
  POST   /admin/terminate?instance=i-...  terminate an instance behind the controller's back

Flags:
`

func main() {
	fs := flag.NewFlagSet("ec2sim", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:4566", "address to serve on")
	configPath := fs.String("config", "", "config file (YAML or JSON)")
	policy := fs.String("policy", "charts/backstop/iam/controller-policy.json",
		"IAM policy every request is held to, as AWS holds the controller's role to it (overrides the config's policyFile); \"none\" allows everything")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])

	cfg := &ec2sim.Config{}
	if *configPath != "" {
		var err error
		if cfg, err = ec2sim.LoadConfig(*configPath); err != nil {
			fmt.Fprintf(os.Stderr, "ec2sim: %v\n", err)
			os.Exit(2)
		}
	}
	switch {
	case *policy == "none":
		cfg.Policy = ec2sim.AllowAll
	case cfg.PolicyFile == "" || isSet(fs, "policy"):
		cfg.PolicyFile = *policy
	}
	sim, err := ec2sim.New(*cfg, clock.RealClock{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ec2sim: %v (run it from the repository's root, or give --policy FILE, or --policy none)\n", err)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "ec2sim: serving EC2 on http://%s (admin: http://%s/admin/requests)\n", *listen, *listen)
	if err := http.ListenAndServe(*listen, sim); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "ec2sim: %v\n", err)
		os.Exit(1)
	}
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
