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
	observe(cfg, func(_ *http.Request, err error) { result(err) })
}

// observe is Observe with the request.
func observe(cfg *rest.Config, result func(*http.Request, error)) {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return observer{rt: rt, result: result} })
}

type observer struct {
	rt     http.RoundTripper
	result func(*http.Request, error)
}

func (o observer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.rt.RoundTrip(req)
	if req.Context().Err() == nil { // not our own cancellation
		o.result(req, err)
	}
	return resp, err
}

// WrappedRoundTripper lets client-go reach the transport underneath (to
// cancel requests).
func (o observer) WrappedRoundTripper() http.RoundTripper { return o.rt }
