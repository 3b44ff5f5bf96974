package aws_test

import (
	"context"
	"net/http/httptest"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var _ = Describe("the HTTP client", func() {
	It("reads every page on kept-alive connections without a transport error to retry", func() {
		// With the SDK's own client about one fresh server in four lost a
		// connection under a response here, and the SDK sent that call twice.
		clk := clocktesting.NewFakeClock(time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC))
		for range 25 {
			sim, err := ec2sim.New(ec2sim.Config{}, clk)
			Expect(err).NotTo(HaveOccurred())
			srv := httptest.NewServer(sim)
			client := ec2.New(ec2.Options{
				Region: "us-east-1", BaseEndpoint: awssdk.String(srv.URL),
				Credentials: credentials.NewStaticCredentialsProvider("AKIDSIMULATOR", "secret", ""),
				Retryer:     awssdk.NopRetryer{}, HTTPClient: aws.HTTPClient(),
			})
			pages := ec2.NewDescribeInstanceTypesPaginator(client, &ec2.DescribeInstanceTypesInput{})
			for pages.HasMorePages() {
				_, err := pages.NextPage(context.Background())
				Expect(err).NotTo(HaveOccurred())
			}
			srv.Close()
		}
	})
})
