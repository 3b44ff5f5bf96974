package operator

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/aws/smithy-go/logging"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/klog/v2"
)

// lines parses every line of a JSON log stream.
func lines(buf *bytes.Buffer) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		Expect(json.Unmarshal([]byte(l), &m)).To(Succeed(), "every line is JSON: %s", l)
		out = append(out, m)
	}
	return out
}

var _ = Describe("the log stream", func() {
	var buf *bytes.Buffer
	BeforeEach(func() { buf = &bytes.Buffer{} })

	It("keeps every line, however often a message repeats", func() {
		log := newLogger(&Options{LogLevel: "info", LogFormat: "json"}, buf)
		for i := 0; i < 300; i++ {
			log.Info("launched", "nodeclaim", i)
		}
		got := lines(buf)
		Expect(got).To(HaveLen(300), "no sampling: each NodeClaim's line is there")
		Expect(got[0]).To(HaveKey("ts"))
		Expect(got[0]).To(HaveKeyWithValue("level", "info"))
		Expect(got[0]).To(HaveKeyWithValue("msg", "launched"))
	})

	It("carries klog's lines (client-go, leader election) as JSON under the logger klog", func() {
		log := newLogger(&Options{LogLevel: "info", LogFormat: "json"}, buf)
		klog.SetLogger(log.WithName("klog"))
		DeferCleanup(klog.ClearLogger)
		klog.InfoS("successfully acquired lease", "lease", "default/backstop-leader-election")
		klog.Warning("the server could not find the requested resource")
		got := lines(buf)
		Expect(got).To(HaveLen(2))
		Expect(got[0]).To(HaveKeyWithValue("logger", "klog"))
		Expect(got[0]).To(HaveKeyWithValue("msg", "successfully acquired lease"))
		Expect(got[0]).To(HaveKeyWithValue("lease", "default/backstop-leader-election"))
	})

	It("carries the AWS SDK's warnings as JSON at info, its debug lines only at debug", func() {
		log := newLogger(&Options{LogLevel: "info", LogFormat: "json"}, buf)
		sdk := awsLogger(log.WithName("aws"))
		sdk.Logf(logging.Warn, "Response has no supported checksum. Not validating response payload.")
		sdk.Logf(logging.Debug, "request %d", 1)
		got := lines(buf)
		Expect(got).To(HaveLen(1))
		Expect(got[0]).To(HaveKeyWithValue("logger", "aws"))
		Expect(got[0]).To(HaveKeyWithValue("sdk-message", "Response has no supported checksum. Not validating response payload."))

		buf.Reset()
		debug := awsLogger(newLogger(&Options{LogLevel: "debug", LogFormat: "json"}, buf).WithName("aws"))
		debug.Logf(logging.Debug, "request %d", 1)
		Expect(lines(buf)).To(ConsistOf(HaveKeyWithValue("sdk-message", "request 1")))
	})

	It("writes the values a logger was given with each of its lines, naming the code that logged as the caller", func() {
		log := newLogger(&Options{LogLevel: "info", LogFormat: "json"}, buf)
		klog.SetLogger(log.WithName("klog"))
		DeferCleanup(klog.ClearLogger)
		reconcile := log.WithName("controller").WithValues("controller", "nodeclaim.launch", "nodeclaim", "default-abcde")
		reconcile.WithValues("reconcileID", "42").Info("launched", "instance", "i-0123")
		reconcile.Error(nil, "not launched", "reason", "InsufficientInstanceCapacity")
		klog.InfoS("lease acquired")
		got := lines(buf)
		Expect(got).To(HaveLen(3))
		Expect(got[0]).To(And(HaveKeyWithValue("logger", "controller"), HaveKeyWithValue("controller", "nodeclaim.launch"),
			HaveKeyWithValue("nodeclaim", "default-abcde"), HaveKeyWithValue("reconcileID", "42"), HaveKeyWithValue("instance", "i-0123")))
		Expect(strings.Index(buf.String(), `"controller":`)).To(BeNumerically("<", strings.Index(buf.String(), `"instance":`)), "a logger's values come before the line's")
		Expect(got[1]).To(And(HaveKeyWithValue("level", "error"), HaveKeyWithValue("nodeclaim", "default-abcde"), Not(HaveKey("reconcileID"))))
		for _, l := range got {
			Expect(l).To(HaveKeyWithValue("caller", HavePrefix("operator/logging_test.go:")), "the caller is the code that logged, not the logger")
		}
	})

	It("hands a logger's values to the sink only with a line written", func() {
		var written []string
		sink := &countingSink{LogSink: funcr.New(func(prefix, args string) { written = append(written, args) }, funcr.Options{}).GetSink()}
		log := logr.New(deferValues(sink))
		for i := range 100 {
			log.WithValues("reconcileID", i)
		}
		Expect(sink.withValues).To(BeZero(), "no reconcile that writes nothing pays for its values")
		log.WithValues("nodeclaim", "a").WithValues("reconcileID", 7).Info("launched", "instance", "i-1")
		Expect(written).To(ConsistOf(`"level"=0 "msg"="launched" "nodeclaim"="a" "reconcileID"=7 "instance"="i-1"`))
	})
})

// countingSink counts the WithValues calls that reach a sink.
type countingSink struct {
	logr.LogSink
	withValues int
}

func (c *countingSink) WithValues(keysAndValues ...any) logr.LogSink {
	c.withValues++
	return c.LogSink.WithValues(keysAndValues...)
}
