package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReadiness(t *testing.T) {
	boom := errors.New("BPF program refused:\nverifier log\x1b[0m")
	for _, tc := range []struct {
		name         string
		unreadyAfter int
		outcomes     string // s: success, f: failure, w: waiting for the cluster, d: done waiting
		wantErr      string // "" when ready
	}{
		{"before any sweep", 3, "", "no sweep has run yet"},
		{"waiting for the cluster", 3, "w", "no sweep has run yet: waiting for the cluster"},
		{"done waiting", 3, "wd", "no sweep has run yet"},
		{"waited, then failed", 3, "wf", "no sweep has succeeded yet (1 failed"},
		{"waited, then swept", 3, "ws", ""},
		{"first sweep failed", 3, "f", "no sweep has succeeded yet (1 failed; last: BPF program refused: verifier log [0m)"},
		{"only failures", 3, "fffff", "no sweep has succeeded yet (5 failed"},
		{"first success", 3, "s", ""},
		{"success after failures", 3, "ffs", ""},
		{"fewer failures than the limit", 3, "sff", ""},
		{"as many failures as the limit", 3, "sfff", "the last 3 sweeps failed (last: BPF program refused"},
		{"more failures", 3, "sffff", "the last 4 sweeps failed"},
		{"ready again after a success", 3, "sfffs", ""},
		{"failures not in a row", 3, "sffsff", ""},
		{"limit one", 1, "sf", "the last 1 sweeps failed"},
		{"limit one, recovered", 1, "sfs", ""},
		{"default limit", 0, "sff", ""},
		{"default limit reached", 0, "sfff", "the last 3 sweeps failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMetrics(t, Options{UnreadyAfter: tc.unreadyAfter})
			for _, o := range tc.outcomes {
				switch o {
				case 's':
					if err := m.Sweep(nil, result(0), at); err != nil {
						t.Fatal(err)
					}
				case 'f':
					m.SweepFailed(boom)
				case 'w':
					m.Waiting("the cluster")
				case 'd':
					m.Waiting("")
				}
			}
			err := m.Ready()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("not ready: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("ready, want %q", tc.wantErr)
			case tc.wantErr != "" && !strings.HasPrefix(err.Error(), tc.wantErr):
				t.Errorf("reason %q, want %q…", err, tc.wantErr)
			}
			if err != nil && strings.ContainsAny(err.Error(), "\n\r\x1b") {
				t.Errorf("reason is not one clean line: %q", err)
			}
		})
	}
}

func TestSweepFailedNil(t *testing.T) {
	m := newMetrics(t, Options{UnreadyAfter: 1})
	if err := m.Sweep(nil, result(), at); err != nil {
		t.Fatal(err)
	}
	m.SweepFailed(nil)
	if err := m.Ready(); err == nil || !strings.Contains(err.Error(), "unknown error") {
		t.Errorf("Ready after SweepFailed(nil): %v", err)
	}
}

func TestOneLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"two\nlines\r\n", "two lines"},
		{"\ttabs  and   spaces ", "tabs and spaces"},
		{"esc\x1b[31m", "esc [31m"},
		{"nul\x00", "nul"},
		{"bad\xff", "bad\uFFFD"},
		{strings.Repeat("x", 600), strings.Repeat("x", maxReason) + "…"},
	} {
		if got := oneLine(tc.in); got != tc.want {
			t.Errorf("oneLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestHandler(t *testing.T) {
	m := newMetrics(t, Options{UnreadyAfter: 2})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	get := func(method, path string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}
	type check struct {
		method, path string
		code         int
		body         string // prefix of the body
	}
	steps := []struct {
		name   string
		do     func()
		checks []check
	}{
		{"start", func() {}, []check{
			{"GET", "/healthz", 200, "ok\n"},
			{"GET", "/readyz", 503, "not ready: no sweep has run yet\n"},
			{"GET", "/metrics", 200, "# HELP"},
			{"HEAD", "/readyz", 503, ""},
			{"POST", "/readyz", 405, ""},
			{"GET", "/", 404, ""},
			{"GET", "/metrics/x", 404, ""},
		}},
		{"first sweep", func() { _ = m.Sweep(nil, result(0), at) }, []check{
			{"GET", "/readyz", 200, "ok\n"},
			{"GET", "/healthz", 200, "ok\n"},
		}},
		{"one failure", func() { m.SweepFailed(errors.New("x")) }, []check{
			{"GET", "/readyz", 200, "ok\n"},
		}},
		{"two failures", func() { m.SweepFailed(errors.New("maps\ngone")) }, []check{
			{"GET", "/readyz", 503, "not ready: the last 2 sweeps failed (last: maps gone)\n"},
			{"GET", "/healthz", 200, "ok\n"},
		}},
		{"recovered", func() { _ = m.Sweep(nil, result(0), at) }, []check{
			{"GET", "/readyz", 200, "ok\n"},
		}},
	}
	for _, s := range steps {
		s.do()
		for _, c := range s.checks {
			code, ctype, body := get(c.method, c.path)
			if code != c.code || !strings.HasPrefix(body, c.body) {
				t.Errorf("%s: %s %s: %d %q, want %d %q…", s.name, c.method, c.path, code, body, c.code, c.body)
			}
			if c.path == "/readyz" && c.method == "GET" && ctype != "text/plain; charset=utf-8" {
				t.Errorf("%s: /readyz Content-Type %q", s.name, ctype)
			}
			if c.path == "/readyz" && strings.Count(body, "\n") > 1 {
				t.Errorf("%s: /readyz body is more than one line: %q", s.name, body)
			}
		}
	}
}
