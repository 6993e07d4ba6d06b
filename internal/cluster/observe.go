package cluster

import (
	"net/http"

	"k8s.io/client-go/rest"
)

// Observe makes every request made with cfg report its outcome to result:
// nil when the API server answered (whatever the status), the error when
// it could not be reached. Informers retry refused connections quietly;
// this is how a watcher learns that the API server is gone, and back,
// without requests of its own.
func Observe(cfg *rest.Config, result func(error)) {
	prev := cfg.WrapTransport
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		if prev != nil {
			rt = prev(rt)
		}
		return observer{rt: rt, result: result}
	}
}

type observer struct {
	rt     http.RoundTripper
	result func(error)
}

func (o observer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.rt.RoundTrip(req)
	if req.Context().Err() == nil { // not our own cancellation
		o.result(err)
	}
	return resp, err
}

// WrappedRoundTripper lets client-go reach the transport underneath (to
// cancel requests).
func (o observer) WrappedRoundTripper() http.RoundTripper { return o.rt }
