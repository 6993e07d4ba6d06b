package sweep

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/profiles"
)

func TestParseEngine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Engine
		err  bool
	}{
		{"", Auto, false}, {"auto", Auto, false}, {"foreach", ForEach, false},
		{"iterator", Iterator, false}, {"userspace", Userspace, false}, {"ebpf", Auto, true},
	} {
		got, err := ParseEngine(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseEngine(%q) = %v, %v", tc.in, got, err)
		}
		if err == nil && tc.in != "" && got.String() != tc.in {
			t.Errorf("%v.String() = %q", got, got)
		}
	}
}

// refuse returns a Config.Refuse that refuses the engines given, as a
// kernel refusing their programs would.
func refuse(es ...Engine) func(Engine) error {
	return func(e Engine) error {
		if slices.Contains(es, e) {
			return fmt.Errorf("load program: operation not permitted (simulated for %s)", e)
		}
		return nil
	}
}

// loads reports whether the kernel loads engine e (a real load).
func loads(t *testing.T, e Engine) bool {
	t.Helper()
	n := newNode(t, "1.18.3", nodeconfig.Clock{Mode: nodeconfig.Ktime})
	st, err := OpenState(n.fs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(n.config(Reclaim, e), st)
	if err != nil {
		return false
	}
	s.Close()
	return true
}

// TestAutoFallsBack: auto keeps the first engine that loads, in order of
// cost, and says which and why; with the cheaper engines refused (the
// iterator's tracing program, or every BPF program) it falls back, and
// the engine it keeps reclaims exactly the expired flows.
func TestAutoFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refused []Engine
	}{
		{"nothing refused", nil},
		{"iterator refused", []Engine{Iterator}},
		{"foreach refused", []Engine{ForEach}},
		{"every BPF program refused", []Engine{ForEach, Iterator}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// What the kernel and the simulated refusals leave, in order.
			var want Engine
			var wantRefused []Engine
			for _, e := range AutoOrder {
				if !slices.Contains(tc.refused, e) && (e == Userspace || loads(t, e)) {
					want = e
					break
				}
				wantRefused = append(wantRefused, e)
			}
			clock := nodeconfig.Clock{Mode: nodeconfig.Ktime}
			n := newNode(t, "1.18.3", clock)
			p := Policy{Name: "a/b", Keys: []Key{{Pod: podA, Dest: netip.MustParsePrefix("93.184.216.0/24")}}}
			p.Timeouts[profiles.StateEstablished] = units(clock, time.Minute)
			var gone []ctmap.Tuple
			for i := 0; i < 3; i++ {
				gone = append(gone, n.flow(t, podA, "93.184.216.34", ctmap.ProtoTCP, profiles.StateEstablished, 2*time.Minute, ctmap.TupleOut))
			}
			kept := n.flow(t, podA, "93.184.216.35", ctmap.ProtoTCP, profiles.StateEstablished, 30*time.Second, ctmap.TupleOut)
			st, err := OpenState(n.fs, true)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if err := st.Replace([]Policy{p}); err != nil {
				t.Fatal(err)
			}
			cfg := n.config(Reclaim, Auto)
			cfg.Refuse = refuse(tc.refused...)
			s, err := New(cfg, st)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c := s.Choice()
			var got []Engine
			for _, r := range c.Refused {
				got = append(got, r.Engine)
				if r.Err == nil || !strings.Contains(c.String(), r.Engine.String()+" refused: ") {
					t.Errorf("refusal of %s not said: %q", r.Engine, c)
				}
			}
			if c.Engine != want || !c.Auto || !slices.Equal(got, wantRefused) {
				t.Errorf("auto chose %s after refusals %v; want %s after %v", c.Engine, got, want, wantRefused)
			}
			if !strings.HasPrefix(c.String(), want.String()+" (auto") {
				t.Errorf("choice %q", c)
			}
			rec, ok, err := st.Engine()
			if err != nil || !ok || rec.Engine != want.String() || rec.Reason != c.Reason() {
				t.Errorf("engine record %+v %v %v, want %s %q", rec, ok, err, want, c.Reason())
			}
			res, err := s.Sweep()
			if err != nil {
				t.Fatal(err)
			}
			if cs := res.Counts[1][profiles.StateEstablished]; cs.Expired != 3 || cs.DeletedCT != 3 || cs.DeletedNAT != 6 || cs.Seen != 4 {
				t.Errorf("counts %+v, want 4 seen, 3 expired and deleted with 6 SNAT entries", cs)
			}
			after := dump(t, n.ct)
			for _, k := range gone {
				if _, ok := after[string(k.Bytes())]; ok {
					t.Errorf("expired flow %v kept", k)
				}
			}
			if _, ok := after[string(kept.Bytes())]; !ok || len(after) != 1 {
				t.Errorf("live flow gone, or more left: %d entries", len(after))
			}
		})
	}
}

// TestExplicitEngineRefused: an engine asked for that cannot be loaded is
// an error naming the refusal and the engines that load.
func TestExplicitEngineRefused(t *testing.T) {
	n := newNode(t, "1.18.3", nodeconfig.Clock{Mode: nodeconfig.Ktime})
	st, err := OpenState(n.fs, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var wantLoads []Engine
	for _, e := range AutoOrder {
		if e != Iterator && (e == Userspace || loads(t, e)) {
			wantLoads = append(wantLoads, e)
		}
	}
	cfg := n.config(Reclaim, Iterator)
	cfg.Refuse = refuse(Iterator)
	_, err = New(cfg, st)
	var ee *EngineError
	if !errors.As(err, &ee) || !errors.Is(err, ErrEngineRefused) || ee.Engine != Iterator || !slices.Equal(ee.Loads, wantLoads) {
		t.Fatalf("err = %v, want an EngineError with loads %v", err, wantLoads)
	}
	for _, want := range []string{"the iterator engine cannot be loaded", "operation not permitted (simulated for iterator)", "engines that load here: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	// Nothing was left loaded: the state takes another sweeper.
	s, err := New(n.config(Reclaim, Userspace), st)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestFallsBackWhenTheSetGrows: a kernel that loads the cheapest engine's
// programs for the set in force but refuses the larger ones a new set
// needs (simulated from the swap on): auto goes on down the order, says
// so and judges the new set's flows; an explicit engine fails the sweep
// with the refusal.
func TestFallsBackWhenTheSetGrows(t *testing.T) {
	if !loads(t, ForEach) {
		t.Skip("this kernel refuses the foreach engine")
	}
	for _, engine := range []Engine{Auto, ForEach} {
		t.Run(engine.String(), func(t *testing.T) {
			n, v4, v6 := dualStackNode(t)
			st, err := OpenState(n.fs, true)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if err := st.Replace([]Policy{v4}); err != nil {
				t.Fatal(err)
			}
			grown := false
			cfg := n.config(Mark, engine)
			cfg.Refuse = func(e Engine) error {
				if grown && e == ForEach {
					return errors.New("load program: argument list too long (simulated for the larger program)")
				}
				return nil
			}
			s, err := New(cfg, st)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Choice().Engine != ForEach {
				t.Fatalf("chose %s before the swap", s.Choice())
			}
			grown = true
			if err := st.Replace([]Policy{v4, v6}); err != nil {
				t.Fatal(err)
			}
			res, err := s.Sweep()
			if engine == ForEach {
				if err == nil || !strings.Contains(err.Error(), "simulated for the larger program") {
					t.Fatalf("sweep with foreach refused: %v, want the refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := s.Choice()
			if c.Engine == ForEach || !c.Auto || len(c.Refused) == 0 || c.Refused[0].Engine != ForEach {
				t.Errorf("after the refusal the choice is %q", c)
			}
			if !strings.Contains(c.String(), "foreach refused: ") {
				t.Errorf("choice %q does not say foreach was refused", c)
			}
			if rec, ok, err := st.Engine(); err != nil || !ok || rec.Engine != c.Engine.String() {
				t.Errorf("engine record %+v %v %v, want %s", rec, ok, err, c.Engine)
			}
			if got := res.Counts[2]; got == nil || got[profiles.StateEstablished].Expired != 1 {
				t.Errorf("the IPv6 flow of a/v6 was not judged expired by %s: %+v", c.Engine, got)
			}
		})
	}
}
