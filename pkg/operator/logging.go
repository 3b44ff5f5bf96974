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
	return zapr.NewLogger(zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.PanicLevel)))
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
