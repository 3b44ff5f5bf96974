package operator

import (
	"fmt"
	"io"
	"os"

	"github.com/aws/smithy-go/logging"
	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// NewLogger returns the one structured logger of the process, at the
// options' level and format, writing to stderr. Every line is kept: zap's
// sampling (controller-runtime's default outside development mode) drops
// all but the first hundred lines of a message each second, which in a
// scale-up hides the very NodeClaims one looks for. klog, which client-go
// and leader election write to, is routed through it, so the stream holds
// one format.
func NewLogger(o *Options) logr.Logger {
	log := newLogger(o, os.Stderr)
	klog.SetLogger(log.WithName("klog"))
	return log
}

// NewLoggerTo is NewLogger writing to w, for a controller run inside
// another program (`make run`); klog is left alone.
func NewLoggerTo(o *Options, w io.Writer) logr.Logger { return newLogger(o, w) }

func newLogger(o *Options, w io.Writer) logr.Logger {
	level := map[string]zapcore.Level{"debug": zapcore.DebugLevel, "info": zapcore.InfoLevel, "error": zapcore.ErrorLevel}[o.LogLevel]
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey, enc.MessageKey, enc.NameKey = "ts", "msg", "logger"
	// Milliseconds in the timestamps: a scale-up's steps are apart by less
	// than a second.
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	encoder := zapcore.NewJSONEncoder(enc)
	if o.LogFormat == "console" {
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		encoder = zapcore.NewConsoleEncoder(enc)
	}
	core := zapcore.NewCore(encoder, zapcore.AddSync(w), zap.NewAtomicLevelAt(level))
	zl := zapr.NewLogger(zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.PanicLevel)))
	return logr.New(deferValues(zl.GetSink()))
}

// deferValues wraps sink, a sink a logr.Logger has initialized already (the
// frame logr adds is counted), in a deferredValues; the frame that adds is
// counted too, so each line's caller is still the code that logged it.
func deferValues(sink logr.LogSink) logr.LogSink {
	if s, ok := sink.(logr.CallDepthLogSink); ok {
		sink = s.WithCallDepth(1)
	}
	return &deferredValues{sink: sink}
}

// deferredValues keeps the key/value pairs WithValues gives it and hands
// them to the sink beneath only with a line written. controller-runtime gives
// every reconcile a logger of its own (the object, a reconcile ID), and zap
// copies its JSON encoder for each — a kilobyte and more every time, for
// lines most reconciles never write: 11 MB of a 500-pod scale-up's
// allocations. A line written costs its values' encoding instead; the line
// is the same.
type deferredValues struct {
	sink   logr.LogSink
	values []any
}

var _ logr.CallDepthLogSink = &deferredValues{}

// Init does nothing: the sink beneath was initialized by the logger it came
// from (deferValues).
func (d *deferredValues) Init(logr.RuntimeInfo) {}

func (d *deferredValues) Enabled(level int) bool { return d.sink.Enabled(level) }

func (d *deferredValues) Info(level int, msg string, keysAndValues ...any) {
	d.sink.Info(level, msg, d.with(keysAndValues)...)
}

func (d *deferredValues) Error(err error, msg string, keysAndValues ...any) {
	d.sink.Error(err, msg, d.with(keysAndValues)...)
}

func (d *deferredValues) WithValues(keysAndValues ...any) logr.LogSink {
	return &deferredValues{sink: d.sink, values: d.with(keysAndValues)}
}

func (d *deferredValues) WithName(name string) logr.LogSink {
	return &deferredValues{sink: d.sink.WithName(name), values: d.values}
}

func (d *deferredValues) WithCallDepth(depth int) logr.LogSink {
	if s, ok := d.sink.(logr.CallDepthLogSink); ok {
		return &deferredValues{sink: s.WithCallDepth(depth), values: d.values}
	}
	return d
}

// with is the values kept followed by more, in a slice of its own.
func (d *deferredValues) with(more []any) []any {
	if len(d.values) == 0 {
		return more
	}
	return append(d.values[:len(d.values):len(d.values)], more...)
}

// awsLogger writes the AWS SDK's own lines (retries, deprecations, checksum
// warnings) into the process's logger: warnings at info, the rest at debug.
func awsLogger(log logr.Logger) logging.Logger {
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		l := log
		if c != logging.Warn {
			l = log.V(1)
		}
		l.Info("AWS SDK", "sdk-message", fmt.Sprintf(format, v...), "sdk-level", string(c))
	})
}
