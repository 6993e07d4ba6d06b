package cluster

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"k8s.io/klog/v2"

	"github.com/egwct/egwct/internal/testutil"
)

// TestLogTo: client-go's logs (klog's, global and contextual, with their
// values) go to the logger LogTo set last; changing it while client-go
// logs is no race (go test -race runs this package).
func TestLogTo(t *testing.T) {
	var first, second testutil.SyncBuffer
	LogTo(slog.New(slog.NewTextHandler(&first, nil)).With("source", "client-go"))
	klog.InfoS("one", "k", "v")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				klog.Background().WithValues("reflector", "r").Info("busy")
			}
		}
	}()
	LogTo(slog.New(slog.NewTextHandler(&second, nil)))
	close(stop)
	wg.Wait()
	klog.Background().WithName("informer").WithValues("n", 2).Info("two")

	if got := first.String(); !strings.Contains(got, `msg=one source=client-go k=v`) {
		t.Errorf("first logger got %q", got)
	}
	got := second.String()
	if !strings.Contains(got, `msg=two`) || !strings.Contains(got, `n=2`) || strings.Contains(got, "msg=one") {
		t.Errorf("second logger got %q", got)
	}
}
