package v1_test

import (
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"k8s.io/utils/ptr"

	v1 "github.com/backstop-sh/backstop/apis/v1"
)

var _ = Describe("NillableDuration", func() {
	DescribeTable("round-trips the text it was read from",
		func(text string, want *time.Duration) {
			var d v1.NillableDuration
			Expect(json.Unmarshal([]byte(`"`+text+`"`), &d)).To(Succeed())
			Expect(d.Duration).To(Equal(want))
			out, err := json.Marshal(d)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(out)).To(Equal(`"` + text + `"`))
		},
		Entry("hours", "720h", ptr.To(720*time.Hour)),
		Entry("mixed units", "1h30m", ptr.To(90*time.Minute)),
		Entry("zero", "0s", ptr.To(time.Duration(0))),
		Entry("Never", "Never", nil),
	)

	It("rejects text that is not a duration, saying what to write", func() {
		var d v1.NillableDuration
		err := json.Unmarshal([]byte(`"30 days"`), &d)
		Expect(err).To(MatchError(ContainSubstring(`duration "30 days"`)))
		Expect(err).To(MatchError(ContainSubstring(`"Never"`)))
	})

	It("is left out of JSON when unset, so the API server applies its default", func() {
		out, err := json.Marshal(v1.NodeClaimTemplateSpec{})
		Expect(err).NotTo(HaveOccurred())
		Expect(string(out)).NotTo(ContainSubstring("expireAfter"))
		out, err = json.Marshal(v1.NodeClaimTemplateSpec{ExpireAfter: v1.MustParseNillableDuration(v1.Never)})
		Expect(err).NotTo(HaveOccurred())
		Expect(string(out)).To(ContainSubstring(`"expireAfter":"Never"`))
	})
})
