package ec2sim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// serveEKS answers EKS's REST-JSON API: DescribeCluster (GET
// /clusters/{name}) only.
func (s *Server) serveEKS(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/clusters/")
	s.mu.Lock()
	s.sqsRequests++ // apart from EC2's count, which ThrottleEvery follows
	requestID := fmt.Sprintf("%08x-eks-%d", s.sqsRequests, s.sqsRequests)
	cluster := s.cfg.EKS
	refused := s.denied([]Authorization{{Action: "eks:DescribeCluster", Resource: fmt.Sprintf("arn:aws:eks:%s:%s:cluster/%s", s.cfg.Region, accountID, name),
		Context: s.context(nil, nil)}})
	s.mu.Unlock()
	reply := func(status int, code string, v any) {
		w.Header().Set("X-Amzn-Requestid", requestID)
		w.Header().Set("Content-Type", "application/json")
		if code != "" {
			w.Header().Set("X-Amzn-Errortype", code)
		}
		s.mu.Lock()
		s.requests = append(s.requests, Request{Action: "eks:DescribeCluster", Params: map[string]string{"name": name}, Error: code, Time: s.clock.Now()})
		s.mu.Unlock()
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.Method != http.MethodGet || name == "" || strings.Contains(name, "/"):
		reply(http.StatusNotFound, "UnknownOperationException", map[string]string{"message": "only DescribeCluster is simulated"})
	case r.Header.Get("Authorization") == "":
		reply(http.StatusForbidden, "MissingAuthenticationTokenException", map[string]string{"message": "Missing Authentication Token"})
	case refused != "":
		reply(http.StatusForbidden, "AccessDeniedException", map[string]string{"message": refused})
	case cluster == nil || cluster.Name != name:
		reply(http.StatusNotFound, "ResourceNotFoundException", map[string]string{"message": "No cluster found for name: " + name + "."})
	default:
		network := map[string]string{"ipFamily": cluster.IPFamily}
		if cluster.IPFamily == "" {
			network["ipFamily"] = "ipv4"
		}
		if cluster.ServiceIPv4CIDR != "" {
			network["serviceIpv4Cidr"] = cluster.ServiceIPv4CIDR
		}
		if cluster.ServiceIPv6CIDR != "" {
			network["serviceIpv6Cidr"] = cluster.ServiceIPv6CIDR
		}
		reply(http.StatusOK, "", map[string]any{"cluster": map[string]any{
			"name":                    cluster.Name,
			"arn":                     fmt.Sprintf("arn:aws:eks:%s:%s:cluster/%s", s.cfg.Region, accountID, cluster.Name),
			"endpoint":                cluster.Endpoint,
			"status":                  "ACTIVE",
			"version":                 cluster.Version,
			"certificateAuthority":    map[string]string{"data": base64.StdEncoding.EncodeToString(cluster.CA)},
			"kubernetesNetworkConfig": network,
		}})
	}
}
