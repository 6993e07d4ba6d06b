package tui

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/muesli/termenv"

	"github.com/egwct/egwct/pkg/profiles"
)

var update = flag.Bool("update", false, "rewrite the golden screens")

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// synthetic is a small node: two policies, flows of no policy, ports.
func synthetic(taken time.Time, reclaimed uint64) *Snapshot {
	s := &Snapshot{
		Taken: taken, Cost: 12 * time.Millisecond,
		Node: Node{
			Profile: "profile 1.18", Clock: "ktime",
			Maps:     []MapFill{{"cilium_ct4_global", 1200, 524288}, {"cilium_snat_v4_external", 2000, 524288}},
			Sweeper:  "egwct state: 2 policies, 4 keys in force",
			Timeouts: [4]time.Duration{60 * time.Second, 8000 * time.Second, 10 * time.Second, 60 * time.Second},
		},
		Policies: []Policy{
			{Name: NoPolicy, Flows: [4]int{5, 300, 10, 85}, Total: 400, IdleP50: 90 * time.Second, IdleP99: time.Hour, Expired: 12},
			{Name: "payments-egress", Flows: [4]int{2, 500, 3, 95}, Total: 600, IdleP50: 2 * time.Minute, IdleP99: 14 * time.Minute,
				Expiring: 7, Over: 3, Expired: 1, Reclaimed: reclaimed, Timeouts: [4]time.Duration{0, 15 * time.Minute, 0, 30 * time.Second},
				WorstPorts: 16384, WorstDest: "192.168.100.10→198.18.0.5:443"},
			{Name: "web\x1b[31m-egress", Flows: [4]int{0, 150, 0, 50}, Total: 200, IdleP50: 20 * time.Minute, IdleP99: 50 * time.Minute,
				Timeouts: [4]time.Duration{0, 2 * time.Hour, 0, 0}, WorstPorts: 120},
		},
		Ports: []Port{
			{Egress: netip.MustParseAddr("192.168.100.10"), Dst: netip.MustParseAddr("198.18.0.5"), DstPort: 443, Proto: 6, Used: 16384, Policies: []string{"payments-egress"}},
			{Egress: netip.MustParseAddr("192.168.100.11"), Dst: netip.MustParseAddr("198.18.0.9"), DstPort: 25, Proto: 6, Used: 120, Policies: []string{"web\x1b[31m-egress", NoPolicy}},
		},
	}
	return s
}

// flows makes n flows of a policy, idle i seconds for flow i.
func flows(n int) []Flow {
	out := make([]Flow, n)
	for i := range out {
		out[i] = Flow{
			Src:   netip.AddrPortFrom(netip.MustParseAddr("10.1.0.2"), uint16(30000+i%30000)),
			Dst:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 443),
			Proto: 6, State: profiles.StateEstablished,
			Idle: time.Duration(i) * time.Second, Remaining: 8000*time.Second - time.Duration(i)*time.Second,
			HasPolicy: true, PolicyRemaining: 900*time.Second - time.Duration(i)*time.Second,
			Egress: netip.AddrPortFrom(netip.MustParseAddr("192.168.100.10"), uint16(40000+i%20000)),
		}
	}
	return out
}

// fake is a Source that records queries and answers with a function.
type fake struct {
	queries []Query
	answer  func(q Query) (*Snapshot, error)
}

func (f *fake) Snapshot(q Query) (*Snapshot, error) {
	f.queries = append(f.queries, q)
	return f.answer(q)
}

func newModel(t testing.TB, w, h int, f *fake) *Model {
	t.Helper()
	m := New(Options{Source: f, Refresh: time.Second, Now: func() time.Time { return t0 }})
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m.Init()
	settle(t, m)
	return m
}

// settle answers the fetch in flight, as the runtime would, until none
// is (commands are not run: ticks and cursor blinks would sleep).
func settle(t testing.TB, m *Model) {
	t.Helper()
	for i := 0; m.loading; i++ {
		if i > 10 {
			t.Fatal("fetches do not settle")
		}
		s, err := m.src.Snapshot(m.query())
		m.Update(snapshotMsg{s, err})
	}
}

func press(t testing.TB, m *Model, keys ...string) {
	t.Helper()
	for _, k := range keys {
		var msg tea.KeyMsg
		switch k {
		case "enter":
			msg = tea.KeyMsg{Type: tea.KeyEnter}
		case "esc":
			msg = tea.KeyMsg{Type: tea.KeyEsc}
		case "tab":
			msg = tea.KeyMsg{Type: tea.KeyTab}
		case "down":
			msg = tea.KeyMsg{Type: tea.KeyDown}
		case "up":
			msg = tea.KeyMsg{Type: tea.KeyUp}
		case "pgdown":
			msg = tea.KeyMsg{Type: tea.KeyPgDown}
		case "end":
			msg = tea.KeyMsg{Type: tea.KeyEnd}
		case "backspace":
			msg = tea.KeyMsg{Type: tea.KeyBackspace}
		default:
			msg = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
		}
		m.Update(msg)
		settle(t, m)
	}
}

func staticSource() *fake {
	return &fake{answer: func(q Query) (*Snapshot, error) {
		s := synthetic(t0, 100)
		if q.Flows {
			s.FlowsOf = q.FlowsOf
			s.Flows = flows(50)
		}
		return s, nil
	}}
}

func refresh(t *testing.T, m *Model) {
	t.Helper()
	m.Update(tickMsg(t0))
	settle(t, m)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/tui -update)", err)
	}
	if got != string(want) {
		t.Errorf("screen %s differs (go test ./internal/tui -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestGoldenScreens renders each view at fixed sizes.
func TestGoldenScreens(t *testing.T) {
	for _, tc := range []struct {
		name string
		w, h int
		keys []string
	}{
		{"policies-160x16", 160, 16, nil},
		{"flows-130x14", 130, 14, []string{"j", "enter"}},
		{"ports-120x10", 120, 10, []string{"3"}},
		{"help-100x30", 100, 30, []string{"?"}},
		{"small-50x8", 50, 8, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newModel(t, tc.w, tc.h, staticSource())
			press(t, m, tc.keys...)
			screen := m.View()
			for i, l := range strings.Split(screen, "\n") {
				if w := len([]rune(l)); w > tc.w {
					t.Errorf("line %d is %d wide, terminal %d: %q", i, w, tc.w, l)
				}
			}
			if n := strings.Count(screen, "\n") + 1; n > tc.h {
				t.Errorf("%d lines on a terminal of %d", n, tc.h)
			}
			golden(t, tc.name+".txt", screen)
		})
	}
}

// TestKeys drives the model with keys and checks its state.
func TestKeys(t *testing.T) {
	tests := []struct {
		name  string
		keys  []string
		check func(t *testing.T, m *Model, f *fake)
	}{
		{"starts on policies", nil, func(t *testing.T, m *Model, f *fake) {
			if m.CurrentView() != ViewPolicies || len(f.queries) != 1 || f.queries[0].Flows {
				t.Errorf("view %v queries %+v", m.CurrentView(), f.queries)
			}
		}},
		{"enter drills into the selected policy", []string{"j", "enter"}, func(t *testing.T, m *Model, f *fake) {
			if m.CurrentView() != ViewFlows || m.FlowsOf() != "payments-egress" {
				t.Fatalf("view %v of %q", m.CurrentView(), m.FlowsOf())
			}
			if q := f.queries[len(f.queries)-1]; !q.Flows || q.FlowsOf != "payments-egress" || q.Window != time.Second {
				t.Errorf("query %+v", q)
			}
			if !strings.Contains(m.View(), "[2 Flows: payments-egress]") {
				t.Error(m.View())
			}
		}},
		{"enter on no policy asks for its flows", []string{"enter"}, func(t *testing.T, m *Model, f *fake) {
			if q := f.queries[len(f.queries)-1]; !q.Flows || q.FlowsOf != "" {
				t.Errorf("query %+v", q)
			}
		}},
		{"esc goes back", []string{"j", "enter", "esc"}, func(t *testing.T, m *Model, f *fake) {
			if m.CurrentView() != ViewPolicies {
				t.Error(m.CurrentView())
			}
			if r, _ := m.tables[ViewPolicies].selected(); m.snap.Policies[r].Name != "payments-egress" {
				t.Error("selection lost")
			}
		}},
		{"views by number and tab", []string{"3", "1", "tab", "tab", "tab"}, func(t *testing.T, m *Model, f *fake) {
			if m.CurrentView() != ViewPolicies {
				t.Error(m.CurrentView())
			}
		}},
		{"filter narrows and esc clears", []string{"/", "w", "e", "b", "enter"}, func(t *testing.T, m *Model, f *fake) {
			tb := m.tables[ViewPolicies]
			if len(tb.idx) != 1 || m.snap.Policies[tb.idx[0]].Total != 200 {
				t.Fatalf("filtered rows %v", tb.idx)
			}
			if !strings.Contains(m.View(), `filter "web"`) {
				t.Error(m.View())
			}
			press(t, m, "esc")
			if len(tb.idx) != 3 || tb.filter != "" {
				t.Errorf("filter not cleared: %v", tb.idx)
			}
		}},
		{"keys read together are taken one by one", []string{"j/web", "enter"}, func(t *testing.T, m *Model, f *fake) {
			if tb := m.tables[ViewPolicies]; tb.filter != "web" || len(tb.idx) != 1 || m.filtering {
				t.Errorf("filter %q rows %v filtering %v", tb.filter, tb.idx, m.filtering)
			}
		}},
		{"filter typing is live, esc cancels", []string{"/", "p", "a", "y"}, func(t *testing.T, m *Model, f *fake) {
			if tb := m.tables[ViewPolicies]; len(tb.idx) != 1 {
				t.Fatalf("rows %v", tb.idx)
			}
			press(t, m, "q") // typed into the filter, not quit
			if m.quit || m.tables[ViewPolicies].filter != "payq" {
				t.Fatalf("q while filtering: quit %v filter %q", m.quit, m.tables[ViewPolicies].filter)
			}
			press(t, m, "esc")
			if tb := m.tables[ViewPolicies]; len(tb.idx) != 3 {
				t.Errorf("rows %v", tb.idx)
			}
		}},
		{"sort cycles and reverses", []string{"s"}, func(t *testing.T, m *Model, f *fake) {
			tb := m.tables[ViewPolicies]
			if tb.sortCol != 1 || !tb.desc || m.snap.Policies[tb.idx[0]].Total != 600 {
				t.Fatalf("sort col %d desc %v first %v", tb.sortCol, tb.desc, tb.idx)
			}
			press(t, m, "S")
			if m.snap.Policies[tb.idx[0]].Total != 200 {
				t.Errorf("reverse: %v", tb.idx)
			}
		}},
		{"pause stops fetching", []string{"p"}, func(t *testing.T, m *Model, f *fake) {
			n := len(f.queries)
			m.Update(tickMsg(t0))
			settle(t, m)
			if !m.Paused() || len(f.queries) != n || !strings.Contains(m.View(), "PAUSED") {
				t.Errorf("paused %v, queries %d→%d", m.Paused(), n, len(f.queries))
			}
			press(t, m, "p")
			m.Update(tickMsg(t0))
			settle(t, m)
			if len(f.queries) != n+1 {
				t.Errorf("resumed: queries %d→%d", n, len(f.queries))
			}
		}},
		{"r refreshes now", []string{"r"}, func(t *testing.T, m *Model, f *fake) {
			if len(f.queries) != 2 {
				t.Errorf("queries %d", len(f.queries))
			}
		}},
		{"help opens and any key closes", []string{"?"}, func(t *testing.T, m *Model, f *fake) {
			if !strings.Contains(m.View(), "reverse sort") {
				t.Fatal(m.View())
			}
			press(t, m, "j")
			if strings.Contains(m.View(), "reverse sort") {
				t.Error("help stays")
			}
		}},
		{"q quits", []string{"q"}, func(t *testing.T, m *Model, f *fake) {
			if !m.quit {
				t.Error("no quit")
			}
		}},
		{"enter on ports drills into its first policy", []string{"3", "enter"}, func(t *testing.T, m *Model, f *fake) {
			if m.CurrentView() != ViewFlows || m.FlowsOf() != "payments-egress" {
				t.Errorf("view %v of %q", m.CurrentView(), m.FlowsOf())
			}
		}},
		{"cursor stays within rows", []string{"end", "j", "j"}, func(t *testing.T, m *Model, f *fake) {
			if tb := m.tables[ViewPolicies]; tb.cursor != 2 {
				t.Errorf("cursor %d", tb.cursor)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := staticSource()
			m := newModel(t, 140, 20, f)
			press(t, m, tc.keys...)
			tc.check(t, m, f)
		})
	}
}

// TestRefresh: numbers change between snapshots, the selection follows its
// policy, the reclaim rate comes from two snapshots, and errors and
// banners are shown and recovered from.
func TestRefresh(t *testing.T) {
	step := 0
	f := &fake{answer: func(q Query) (*Snapshot, error) {
		step++
		switch step {
		case 3:
			return nil, errors.New("read the datapath clock: boom")
		case 4:
			s := synthetic(t0.Add(3*time.Second), 100)
			s.Banner = "/sys/fs/bpf/tc/globals/cilium_ct4_global is missing (is Cilium running, or restarting?)"
			s.Policies = s.Policies[:1]
			return s, nil
		}
		s := synthetic(t0.Add(time.Duration(step)*time.Second), uint64(100*step))
		if step == 2 {
			// Reordered: the selection must follow payments-egress.
			s.Policies[0], s.Policies[1] = s.Policies[1], s.Policies[0]
		}
		return s, nil
	}}
	m := newModel(t, 160, 20, f)
	press(t, m, "s", "j") // by flows, descending: payments, (no policy), web → select (no policy)
	sel := func() string {
		r, _ := m.tables[ViewPolicies].selected()
		return m.snap.Policies[r].Name
	}
	if sel() != NoPolicy {
		t.Fatalf("selected %q", sel())
	}
	refresh(t, m)
	if sel() != NoPolicy {
		t.Errorf("selection moved to %q", sel())
	}
	if r := m.rate["payments-egress"]; r != 100 {
		t.Errorf("rate %v, want 100/s", r)
	}
	refresh(t, m)
	if !strings.Contains(m.View(), "boom (retrying)") || m.snap == nil {
		t.Errorf("error not shown:\n%s", m.View())
	}
	refresh(t, m)
	v := m.View()
	if !strings.Contains(v, "⚠ /sys/fs/bpf/tc/globals/cilium_ct4_global is missing") || strings.Contains(v, "boom") {
		t.Errorf("banner:\n%s", v)
	}
	refresh(t, m)
	if v := m.View(); strings.Contains(v, "missing") || !strings.Contains(v, "payments-egress") {
		t.Errorf("not recovered:\n%s", v)
	}
}

// TestControlCharacters: names from the cluster never reach the terminal raw.
func TestControlCharacters(t *testing.T) {
	m := newModel(t, 160, 20, staticSource())
	for _, v := range []View{ViewPolicies, ViewPorts} {
		m.view = v
		if s := m.View(); strings.ContainsRune(s, 0x1b) {
			t.Errorf("view %d has an escape: %q", v, s)
		}
	}
	for in, want := range map[string]string{
		"plain":                  "plain",
		"a\x1b[2Jb":              "a?[2Jb",
		"bidi\u202eevil":         "bidi?evil",
		"nul\x00del\x7fc1\u0085": "nul?del?c1?",
		"bad\xffutf8":            "bad?utf8",
		"ünïcode ok":             "ünïcode ok",
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// flowsModel is a model of the flows view over n flows.
func flowsModel(t testing.TB, n int) *Model {
	t.Helper()
	rows := flows(n)
	f := &fake{answer: func(q Query) (*Snapshot, error) {
		s := synthetic(t0, 0)
		if q.Flows {
			s.FlowsOf, s.Flows = q.FlowsOf, rows
		}
		return s, nil
	}}
	m := newModel(t, 130, 30, f)
	press(t, m, "j", "enter")
	if got := len(m.tables[ViewFlows].idx); got != n {
		t.Fatalf("%d rows, want %d", got, n)
	}
	return m
}

// TestScrollLargeFlows: 300,000 flows scroll by rendering only the
// window: a page-down and its render allocate no more bytes than over
// 3,000 flows, give or take what longer numbers take (bytes are counted,
// not time: the test holds on a busy machine and under the race
// detector; a copy or a format of every row would be megabytes), and the
// end of the list is its last row.
func TestScrollLargeFlows(t *testing.T) {
	perPageDown := func(m *Model) uint64 {
		const n = 50
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			press(t, m, "pgdown")
			_ = m.View()
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / n
	}
	small, big := perPageDown(flowsModel(t, 3000)), perPageDown(flowsModel(t, 300000))
	if big > 2*small {
		t.Errorf("a page-down and its render allocate %d bytes over 300,000 flows, %d over 3,000: the render depends on the rows outside the window", big, small)
	}
	m := flowsModel(t, 300000)
	press(t, m, "end")
	v := m.View()
	// Sorted by idle, longest first: the last row is the least idle.
	if !strings.Contains(v, "300000/300000") || !strings.Contains(v, "10.1.0.2:30000 ") {
		t.Errorf("end:\n%s", v)
	}
}

// BenchmarkScrollLargeFlows: one page-down and its render over 300,000
// flows, against the same over 3,000 (go test ./internal/tui -run '^$'
// -bench ScrollLargeFlows).
func BenchmarkScrollLargeFlows(b *testing.B) {
	for _, n := range []int{3000, 300000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			m := flowsModel(b, n)
			for b.Loop() {
				press(b, m, "pgdown")
				_ = m.View()
			}
		})
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 9 * time.Second: "9s", 65 * time.Second: "1m05s", 8000 * time.Second: "2h13m",
		-3 * time.Second: "-3s", 50 * time.Hour: "2d02h", 1500 * time.Millisecond: "1s", 300 * time.Millisecond: "300ms",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
	if got := bar(16384, Node{}.Ports(), 12); got != "██████······" {
		t.Errorf("bar %q", got)
	}
}

// TestResize: a smaller window keeps the selected row on screen and the
// screen within the window; a tiny one still renders.
func TestResize(t *testing.T) {
	for _, size := range [][2]int{{140, 12}, {60, 9}, {20, 3}, {1, 1}} {
		m := newModel(t, 140, 60, staticSource())
		press(t, m, "j", "enter")
		for i := 0; i < 30; i++ {
			press(t, m, "j")
		}
		m.Update(tea.WindowSizeMsg{Width: size[0], Height: size[1]})
		tb := m.tables[ViewFlows]
		if tb.cursor != 30 || tb.cursor < tb.offset || tb.cursor >= tb.offset+tb.page() {
			t.Errorf("%v: cursor %d offset %d page %d", size, tb.cursor, tb.offset, tb.page())
		}
		v := m.View()
		if size[1] >= 8 {
			if n := strings.Count(v, "\n") + 1; n > size[1] {
				t.Errorf("%v: %d lines", size, n)
			}
			if !strings.Contains(v, "31/50") {
				t.Errorf("%v: status lost:\n%s", size, v)
			}
		}
		for _, l := range strings.Split(v, "\n") {
			if len([]rune(l)) > max(size[0], 1) && size[0] > 1 {
				t.Errorf("%v: line too wide: %q", size, l)
			}
		}
	}
}

// TestProgram runs the model in bubbletea's runtime (fetches on their own
// goroutines, the timer) and quits with q; run with -race. Keys are sent
// once the first snapshot is in, and q once three were fetched: the test
// waits for events, not for time, and holds on a busy machine.
func TestProgram(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	src := SourceFunc(func(q Query) (*Snapshot, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		s := synthetic(time.Now(), 1)
		if q.Flows {
			s.FlowsOf, s.Flows = q.FlowsOf, flows(1000)
		}
		return s, nil
	})
	m := New(Options{Source: src, Refresh: 20 * time.Millisecond})
	var out strings.Builder
	// The runtime hands each message to the filter, then to the model,
	// one after the other: a key sent after the first snapshot passed
	// the filter finds it in the model.
	first := make(chan struct{})
	var once sync.Once
	filter := func(_ tea.Model, msg tea.Msg) tea.Msg {
		if _, ok := msg.(snapshotMsg); ok {
			once.Do(func() { close(first) })
		}
		return msg
	}
	p := tea.NewProgram(m, tea.WithInput(nil), tea.WithOutput(&out), tea.WithoutSignalHandler(), tea.WithFilter(filter))
	done := make(chan error, 1)
	go func() { _, err := p.Run(); done <- err }()
	p.Send(tea.WindowSizeMsg{Width: 120, Height: 30})
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case err := <-done:
			t.Fatalf("the program ended before %s: %v", what, err)
		case <-time.After(2 * time.Minute): // only ends a hung test
			p.Kill()
			t.Fatalf("no %s", what)
		}
	}
	wait("first snapshot", first)
	for _, k := range []string{"j", "enter", "j", "s", "3", "1", "r"} {
		if k == "enter" {
			p.Send(tea.KeyMsg{Type: tea.KeyEnter})
			continue
		}
		p.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)})
	}
	fetched := make(chan struct{})
	go func() {
		defer close(fetched)
		for {
			mu.Lock()
			n := calls
			mu.Unlock()
			if n >= 3 {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wait("three snapshots at a 20 ms refresh", fetched)
	p.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute): // only ends a hung test
		p.Kill()
		t.Fatal("q did not quit")
	}
	if m.FlowsOf() != "payments-egress" {
		t.Errorf("drilled into %q", m.FlowsOf())
	}
}

// TestColours: with colours on, cells worth attention are styled and no
// line is wider than the terminal.
func TestColours(t *testing.T) {
	lipgloss.SetColorProfile(termenv.ANSI)
	defer lipgloss.SetColorProfile(termenv.Ascii)
	for _, w := range []int{100, 128, 131} { // cut inside and around PORTS
		m := newModel(t, w, 20, staticSource())
		for i, l := range strings.Split(m.View(), "\n") {
			if n := ansi.StringWidth(l); n > w {
				t.Errorf("width %d: line %d is %d wide", w, i, n)
			}
			if s := ansi.Strip(l); s != strings.TrimRight(s, " ") && !strings.Contains(l, "\x1b[7m") {
				t.Errorf("width %d: trailing blanks: %q", w, l)
			}
		}
	}
	m := newModel(t, 160, 20, staticSource())
	v := m.View()
	// payments-egress (not selected): OVER 3 and EXPIRED 1 warn, PORTS 50 % alerts.
	var row string
	for _, l := range strings.Split(v, "\n") {
		if strings.HasPrefix(l, "payments-egress") {
			row = l
		}
	}
	if strings.Count(row, "\x1b[") < 6 || !strings.Contains(ansi.Strip(row), "16384 50%") {
		t.Errorf("payments row not emphasized: %q", row)
	}
}

// TestQuickFirstFrame: the first fetch asks for a quick snapshot; when it
// comes without ports, the full one is fetched at once, not a refresh
// later.
func TestQuickFirstFrame(t *testing.T) {
	f := &fake{answer: func(q Query) (*Snapshot, error) {
		s := synthetic(t0, 0)
		if q.Quick {
			s.Ports, s.Node.PortsPending = nil, true
		}
		return s, nil
	}}
	m := New(Options{Source: f, Refresh: time.Hour, Now: func() time.Time { return t0 }})
	m.Update(tea.WindowSizeMsg{Width: 160, Height: 40})
	m.Init()
	settle(t, m)
	if len(f.queries) != 2 || !f.queries[0].Quick || f.queries[1].Quick {
		t.Fatalf("queries %+v", f.queries)
	}
	if m.snap.Node.PortsPending || len(m.snap.Ports) != 2 {
		t.Errorf("after the second fetch: %+v", m.snap.Node)
	}
}

// TestIPv6Columns: the address columns of the flows and ports views
// widen to hold IPv6 addresses whole, and narrow again for IPv4 only.
func TestIPv6Columns(t *testing.T) {
	dst6 := netip.MustParseAddr("2001:db8:1:c:ea92:333b:8f04:2b95")
	egress6 := netip.MustParseAddr("2001:db8:ff00::a")
	v6 := true
	src := &fake{answer: func(q Query) (*Snapshot, error) {
		s := synthetic(t0, 100)
		if q.Flows {
			s.FlowsOf = q.FlowsOf
			s.Flows = flows(3)
		}
		if v6 {
			s.Ports = append(s.Ports, Port{Egress: egress6, Dst: dst6, DstPort: 5432, Proto: 6, Used: 99999, Policies: []string{"payments-egress"}})
			if q.Flows {
				s.Flows[0].Src = netip.AddrPortFrom(netip.MustParseAddr("fd00:10:1::a01:26"), 34704)
				s.Flows[0].Dst = netip.AddrPortFrom(dst6, 5432)
				s.Flows[0].Egress = netip.AddrPortFrom(egress6, 34704)
			}
		}
		return s, nil
	}}
	m := newModel(t, 200, 20, src)
	press(t, m, "j", "enter")
	for _, want := range []string{"[fd00:10:1::a01:26]:34704", "[2001:db8:1:c:ea92:333b:8f04:2b95]:5432", "[2001:db8:ff00::a]:34704", "10.1.0.2:30001"} {
		if s := m.View(); !strings.Contains(s, want) {
			t.Errorf("flows view lacks %s:\n%s", want, s)
		}
	}
	press(t, m, "3")
	for _, want := range []string{"2001:db8:ff00::a ", "[2001:db8:1:c:ea92:333b:8f04:2b95]:5432", "198.18.0.5:443"} {
		if s := m.View(); !strings.Contains(s, want) {
			t.Errorf("ports view lacks %s:\n%s", want, s)
		}
	}
	v6 = false
	refresh(t, m)
	if w := m.tables[ViewPorts].cols[1].width; w != addrPortWidth {
		t.Errorf("IPv4 only again: destination column %d wide", w)
	}
}

// TestDutyCycle: on a node whose maps take long to read, timed refreshes
// are spaced to DutyCycle times the read's cost; r still refreshes at once.
func TestDutyCycle(t *testing.T) {
	f := &fake{answer: func(q Query) (*Snapshot, error) {
		s := synthetic(t0, 0)
		s.Cost = 350 * time.Millisecond // 3.5 s between refreshes of 1 s
		return s, nil
	}}
	m := newModel(t, 160, 40, f)
	start := len(f.queries)
	for i := 0; i < 8; i++ {
		refresh(t, m)
	}
	if got := len(f.queries) - start; got != 2 {
		t.Errorf("8 ticks of 1s fetched %d times, want 2 (every 4th)", got)
	}
	if !strings.Contains(m.View(), "every 4s (reads take 350ms)") {
		t.Errorf("header does not say the interval:\n%s", m.View())
	}
	n := len(f.queries)
	press(t, m, "r")
	if len(f.queries) != n+1 {
		t.Error("r did not refresh at once")
	}
}

// TestExpiringWindow: EXPIRING counts the flows that end before the next
// refresh, which a node whose reads are slow spaces out.
func TestExpiringWindow(t *testing.T) {
	for _, tc := range []struct {
		cost time.Duration
		want time.Duration
	}{
		{12 * time.Millisecond, time.Second},
		{100 * time.Millisecond, time.Second},
		{350 * time.Millisecond, 4 * time.Second},
		{1200 * time.Millisecond, 12 * time.Second},
	} {
		f := &fake{answer: func(q Query) (*Snapshot, error) {
			s := synthetic(t0, 0)
			s.Cost = tc.cost
			return s, nil
		}}
		m := newModel(t, 160, 40, f)
		for i := 0; i < 12; i++ {
			refresh(t, m)
		}
		if q := f.queries[len(f.queries)-1]; q.Window != tc.want {
			t.Errorf("reads of %s: window %s, want %s", tc.cost, q.Window, tc.want)
		}
	}
}

// TestOldSnapshotReleased: once a new snapshot is on screen the one
// before it can be collected (a snapshot of a big node's flows is
// hundreds of MB), and the reclaim rate is still computed from it.
func TestOldSnapshotReleased(t *testing.T) {
	var first weak.Pointer[Snapshot]
	for _, tc := range []struct {
		name  string
		flows int
	}{{"policies", 0}, {"flows", 10000}} {
		t.Run(tc.name, func(t *testing.T) {
			step := 0
			f := &fake{answer: func(q Query) (*Snapshot, error) {
				step++
				s := synthetic(t0.Add(time.Duration(step)*time.Second), uint64(50*step))
				s.Flows = flows(tc.flows)
				if step == 1 {
					first = weak.Make(s)
				}
				return s, nil
			}}
			m := newModel(t, 160, 40, f)
			refresh(t, m)
			runtime.GC()
			if first.Value() != nil {
				t.Error("the first snapshot is still held after the second")
			}
			if r := m.rate["payments-egress"]; r != 50 {
				t.Errorf("rate %v, want 50/s", r)
			}
		})
	}
}

// TestPortCapacity: shares and levels of port use are of the node's
// capacity (the ports above its node-port range), Cilium's default when
// the snapshot does not say.
func TestPortCapacity(t *testing.T) {
	for _, c := range []struct {
		capacity   int
		use, worst string // the ports view's USE% of 16,384 ports, and the policies view's PORTS
		level      int
	}{
		{0, "50%", "16384 50%", 2},
		{32768, "50%", "16384 50%", 2},
		{65535 - 40000, "64%", "16384 64%", 2},
		{65536 - 1024, "25%", "16384 25%", 1},
	} {
		m := newModel(t, 160, 20, &fake{answer: func(Query) (*Snapshot, error) {
			s := synthetic(t0, 100)
			s.Node.PortCapacity = c.capacity
			return s, nil
		}})
		if v := m.View(); !strings.Contains(v, c.worst) {
			t.Errorf("capacity %d: the policies view lacks %q:\n%s", c.capacity, c.worst, v)
		}
		m.view = ViewPorts
		tb := m.portsTable()
		if got := tb.text(0, 4); got != c.use {
			t.Errorf("capacity %d: USE%% %q, want %q", c.capacity, got, c.use)
		}
		if got := tb.level(0, 4); got != c.level {
			t.Errorf("capacity %d: level %d, want %d", c.capacity, got, c.level)
		}
	}
}
