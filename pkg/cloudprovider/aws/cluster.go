package aws

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"golang.org/x/sync/singleflight"

	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/bootstrap"
)

// ClusterFacts finds what a node needs to join the cluster: the API
// server's endpoint and CA and the Service CIDR, from EKS DescribeCluster,
// with the endpoint and CA given by flags winning. The answer is kept once
// found (a cluster's endpoint and CA do not change under a running node);
// a failure is not, so the next launch asks again.
type ClusterFacts struct {
	eks  *eks.Client
	name string
	// Endpoint and CA, when set, override EKS's.
	Endpoint string
	CA       []byte

	mu     sync.Mutex
	found  *bootstrap.Cluster
	flight singleflight.Group
}

// NewClusterFacts asks EKS about the cluster name; endpoint and caBundle
// (PEM, or base64 of it) override what EKS says.
func NewClusterFacts(client *eks.Client, name, endpoint, caBundle string) (*ClusterFacts, error) {
	ca, err := decodeCA(caBundle)
	if err != nil {
		return nil, err
	}
	return &ClusterFacts{eks: client, name: name, Endpoint: endpoint, CA: ca}, nil
}

func decodeCA(bundle string) ([]byte, error) {
	bundle = strings.TrimSpace(bundle)
	if bundle == "" || strings.HasPrefix(bundle, "-----BEGIN") {
		return []byte(bundle), nil
	}
	pem, err := base64.StdEncoding.DecodeString(bundle)
	if err != nil || !strings.HasPrefix(string(pem), "-----BEGIN") {
		return nil, fmt.Errorf("--cluster-ca-bundle (CLUSTER_CA_BUNDLE) is neither a PEM certificate nor base64 of one")
	}
	return pem, nil
}

// Get returns the cluster's facts, or a ConfigurationError saying which
// could not be found and how to give them.
func (c *ClusterFacts) Get(ctx context.Context) (bootstrap.Cluster, error) {
	c.mu.Lock()
	found := c.found
	c.mu.Unlock()
	if found != nil {
		return *found, nil
	}
	v, err, _ := c.flight.Do("describe", func() (any, error) { return c.describe(ctx) })
	if err != nil {
		return bootstrap.Cluster{}, err
	}
	cluster := v.(bootstrap.Cluster)
	c.mu.Lock()
	c.found = &cluster
	c.mu.Unlock()
	return cluster, nil
}

func (c *ClusterFacts) describe(ctx context.Context) (bootstrap.Cluster, error) {
	out := bootstrap.Cluster{Name: c.name, Endpoint: c.Endpoint, CA: c.CA}
	resp, err := c.eks.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String(c.name)})
	if err != nil {
		fe, ok := FromAPIError(err)
		if !ok {
			return out, retryable("DescribeCluster", err)
		}
		return out, &cloudprovider.ConfigurationError{Cause: causeOf(err),
			Message: fmt.Sprintf("cannot learn cluster %s's API endpoint, CA and Service CIDR from EKS DescribeCluster (%s: %s); nodes cannot join without them, so nothing is launched. "+
				"Check --cluster-name (CLUSTER_NAME) names the EKS cluster and the controller's role may call eks:DescribeCluster on it", c.name, fe.Code, fe.Message)}
	}
	cl := resp.Cluster
	if out.Endpoint == "" {
		out.Endpoint = aws.ToString(cl.Endpoint)
	}
	if len(out.CA) == 0 && cl.CertificateAuthority != nil {
		pem, err := base64.StdEncoding.DecodeString(aws.ToString(cl.CertificateAuthority.Data))
		if err != nil {
			return out, fmt.Errorf("EKS DescribeCluster %s: certificateAuthority.data is not base64: %w", c.name, err)
		}
		out.CA = pem
	}
	if n := cl.KubernetesNetworkConfig; n != nil {
		out.ServiceCIDR = aws.ToString(n.ServiceIpv4Cidr)
		if string(n.IpFamily) == "ipv6" {
			out.ServiceCIDR = aws.ToString(n.ServiceIpv6Cidr)
		}
	}
	var missing []string
	if out.Endpoint == "" {
		missing = append(missing, "the API endpoint (set --cluster-endpoint)")
	}
	if len(out.CA) == 0 {
		missing = append(missing, "the CA (set --cluster-ca-bundle)")
	}
	if out.ServiceCIDR == "" {
		missing = append(missing, "the Service CIDR")
	}
	if len(missing) > 0 {
		return out, &cloudprovider.ConfigurationError{Cause: cloudprovider.Cause{Code: "ClusterFactsMissing", Err: fmt.Errorf("missing %s", strings.Join(missing, ", "))},
			Message: fmt.Sprintf("EKS DescribeCluster %s gave no %s; nodes cannot join without them, so nothing is launched", c.name, strings.Join(missing, ", "))}
	}
	return out, nil
}
