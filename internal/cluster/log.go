package cluster

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// clientGoLog is where client-go's logs go: klog's logger is one for the
// whole process, set once; LogTo changes where it sends them.
var clientGoLog struct {
	once sync.Once
	to   atomic.Pointer[slog.Logger]
}

// LogTo sends client-go's logs (through klog) to log from now on, in
// place of klog's own output to standard error. klog's logger is
// process-wide: the last call wins, and a call never races with
// client-go's goroutines reading it.
func LogTo(log *slog.Logger) {
	clientGoLog.to.Store(log)
	clientGoLog.once.Do(func() { klog.SetSlogLogger(slog.New(forward{})) })
}

// forward is a slog.Handler that passes each record to the handler of
// LogTo's logger, with the attributes and groups added to it on the way.
type forward struct {
	with []func(slog.Handler) slog.Handler
}

func (f forward) handler() slog.Handler {
	h := clientGoLog.to.Load().Handler()
	for _, w := range f.with {
		h = w(h)
	}
	return h
}

func (f forward) add(w func(slog.Handler) slog.Handler) forward {
	return forward{with: append(slices.Clip(f.with), w)}
}

func (forward) Enabled(ctx context.Context, level slog.Level) bool {
	return clientGoLog.to.Load().Handler().Enabled(ctx, level)
}

func (f forward) Handle(ctx context.Context, r slog.Record) error { return f.handler().Handle(ctx, r) }

func (f forward) WithAttrs(attrs []slog.Attr) slog.Handler {
	return f.add(func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })
}

func (f forward) WithGroup(name string) slog.Handler {
	return f.add(func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
}
