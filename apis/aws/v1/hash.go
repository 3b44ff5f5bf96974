package v1

import (
	"encoding/json"
	"hash/fnv"
	"strconv"
)

// Drift annotations a NodeClaim is stamped with at launch: the hash of its
// EC2NodeClass's spec then, and the way it was computed (Backstop's own
// version, so Karpenter's stamps are not compared with it).
const (
	NodeClassHashAnnotationKey        = Group + "/ec2nodeclass-hash"
	NodeClassHashVersionAnnotationKey = Group + "/ec2nodeclass-hash-version"
	NodeClassHashVersion              = "backstop-1"
)

// SpecHash is a hash of the spec without its selector terms: subnets,
// security groups and AMIs drift by what the terms resolve to, not by how
// they are written. ipPrefixCount is left out too, as Karpenter leaves it:
// changing it applies to new nodes without replacing the old. So are the
// fields Backstop keeps but does not act on (see ValidationSucceeded): a
// node is not drifted from what Backstop would not launch either.
func (c *EC2NodeClass) SpecHash() string {
	spec := c.Spec
	spec.SubnetSelectorTerms, spec.SecurityGroupSelectorTerms, spec.AMISelectorTerms = nil, nil, nil
	spec.IPPrefixCount = nil
	spec.CapacityReservationSelectorTerms, spec.PlacementGroupSelector, spec.NetworkInterfaces = nil, nil, nil
	data, err := json.Marshal(spec)
	if err != nil {
		// Plain API types always marshal.
		panic(err)
	}
	h := fnv.New64a()
	_, _ = h.Write(data)
	return strconv.FormatUint(h.Sum64(), 10)
}
