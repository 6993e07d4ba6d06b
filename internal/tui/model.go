package tui

import (
	"time"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
)

// View is one of top's screens.
type View int

// The views, in the order of the keys 1, 2, 3.
const (
	ViewPolicies View = iota
	ViewFlows
	ViewPorts
)

// Options configure a Model.
type Options struct {
	Source Source
	// Refresh is the interval between snapshots (default 1 s).
	Refresh time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Keys default to DefaultKeys.
	Keys *KeyMap
}

// Model is top's bubbletea model.
type Model struct {
	src     Source
	refresh time.Duration
	now     func() time.Time
	keys    KeyMap
	help    help.Model

	snap *Snapshot
	err  error
	// rate is reclaimed entries per second per policy, from the last two
	// snapshots. Of the one before snap only what rate needs is kept: a
	// snapshot of a big node's flows is hundreds of MB.
	rate          map[string]float64
	prevTaken     time.Time
	prevReclaimed map[string]uint64

	view     View
	flowsOf  string
	hasFlows bool // flowsOf has been chosen
	tables   [3]*table

	filtering bool
	input     textinput.Model
	paused    bool
	showHelp  bool
	loading   bool
	// pending asks for another fetch once the running one ends.
	pending bool
	// first is set until the first snapshot came: it is asked for quick.
	first bool
	// skipped counts the ticks since the last timed fetch.
	skipped int

	width, height int
	// quit is set once a quit key was pressed.
	quit bool
}

// snapshotMsg carries a Source's answer.
type snapshotMsg struct {
	snap *Snapshot
	err  error
}

// tickMsg is the refresh timer.
type tickMsg time.Time

// New returns a Model reading from opts.Source.
func New(opts Options) *Model {
	m := &Model{src: opts.Source, refresh: opts.Refresh, now: opts.Now, help: help.New(), width: 80, height: 24, first: true}
	if m.refresh <= 0 {
		m.refresh = time.Second
	}
	if m.now == nil {
		m.now = time.Now
	}
	if opts.Keys != nil {
		m.keys = *opts.Keys
	} else {
		m.keys = DefaultKeys()
	}
	m.input = textinput.New()
	m.input.Prompt = "/"
	m.input.CharLimit = 128
	m.tables[ViewPolicies] = m.policiesTable()
	m.tables[ViewFlows] = m.flowsTable()
	m.tables[ViewPorts] = m.portsTable()
	m.layout()
	return m
}

// Init starts the first fetch and the timer.
func (m *Model) Init() tea.Cmd {
	return tea.Batch(m.fetch(), m.tick())
}

func (m *Model) tick() tea.Cmd {
	return tea.Tick(m.refresh, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// DutyCycle bounds the share of a CPU top spends reading: a timed refresh
// starts only once DutyCycle times the last read's cost has passed since
// the previous one (a refresh asked for with r starts at once).
const DutyCycle = 10

// interval is the time between timed refreshes: the refresh interval, or
// a multiple of it on a node whose maps take long to read.
func (m *Model) interval() time.Duration {
	if m.snap == nil || m.refresh <= 0 {
		return m.refresh
	}
	ticks := (DutyCycle*m.snap.Cost + m.refresh - 1) / m.refresh
	return max(1, ticks) * m.refresh
}

// due reports whether a timed refresh should start at this tick.
func (m *Model) due() bool {
	m.skipped++
	return time.Duration(m.skipped)*m.refresh >= m.interval()
}

// query is what the current view needs. Flows count as expiring when
// they end before the next timed refresh: on a node whose reads space the
// refreshes out (interval), within that longer interval.
func (m *Model) query() Query {
	return Query{FlowsOf: m.flowsOf, Flows: m.hasFlows, Window: m.interval(), Quick: m.first}
}

// fetch asks the source for a snapshot, one at a time.
func (m *Model) fetch() tea.Cmd {
	if m.loading {
		m.pending = true
		return nil
	}
	m.loading = true
	src, q := m.src, m.query()
	return func() tea.Msg {
		s, err := src.Snapshot(q)
		return snapshotMsg{s, err}
	}
}

// Update handles messages.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.help.Width = msg.Width
		m.layout()
		return m, nil
	case tickMsg:
		if m.paused || !m.due() {
			return m, m.tick()
		}
		m.skipped = 0
		return m, tea.Batch(m.fetch(), m.tick())
	case snapshotMsg:
		m.loading = false
		m.first = false
		m.setSnapshot(msg.snap, msg.err)
		m.layout()
		if m.pending || (msg.snap != nil && msg.snap.Node.PortsPending) {
			m.pending = false
			return m, m.fetch()
		}
		return m, nil
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

// setSnapshot takes a new snapshot (or an error: the old one stays).
func (m *Model) setSnapshot(s *Snapshot, err error) {
	m.err = err
	if err != nil || s == nil {
		return
	}
	var keys [3]string
	var had [3]bool
	for i, t := range m.tables {
		keys[i], had[i] = t.selectedKey()
	}
	m.snap = s
	m.rate = map[string]float64{}
	if dt := s.Taken.Sub(m.prevTaken).Seconds(); m.prevReclaimed != nil && dt > 0 {
		for _, p := range s.Policies {
			if b, ok := m.prevReclaimed[p.Name]; ok && p.Reclaimed >= b {
				m.rate[p.Name] = float64(p.Reclaimed-b) / dt
			}
		}
	}
	m.prevTaken, m.prevReclaimed = s.Taken, make(map[string]uint64, len(s.Policies))
	for _, p := range s.Policies {
		m.prevReclaimed[p.Name] = p.Reclaimed
	}
	m.tables[ViewPolicies].setRows(len(s.Policies), keys[ViewPolicies], had[ViewPolicies])
	if s.FlowsOf != m.flowsOf {
		m.tables[ViewFlows].setRows(0, "", false)
	} else {
		m.tables[ViewFlows].setRows(len(s.Flows), "", false)
	}
	m.tables[ViewPorts].setRows(len(s.Ports), keys[ViewPorts], had[ViewPorts])
	m.fitAddressColumns()
}

func (m *Model) key(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	// Keys typed faster than the terminal is read arrive as one message
	// ("/pay"): handle them one by one.
	if msg.Type == tea.KeyRunes && len(msg.Runes) > 1 && !msg.Paste && !m.filtering {
		var cmds []tea.Cmd
		for _, r := range msg.Runes {
			_, cmd := m.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
			cmds = append(cmds, cmd)
		}
		return m, tea.Batch(cmds...)
	}
	if msg.Type == tea.KeyCtrlC {
		m.quit = true
		return m, tea.Quit
	}
	t := m.tables[m.view]
	if m.filtering {
		switch msg.Type {
		case tea.KeyEnter:
			m.filtering = false
			m.input.Blur()
			t.setFilter(m.input.Value())
			return m, nil
		case tea.KeyEsc:
			m.filtering = false
			m.input.Blur()
			m.input.SetValue("")
			t.setFilter("")
			return m, nil
		}
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		t.setFilter(m.input.Value())
		return m, cmd
	}
	if m.showHelp {
		// Any key leaves the help screen; q still quits.
		m.showHelp = false
		if key.Matches(msg, m.keys.Quit) {
			m.quit = true
			return m, tea.Quit
		}
		return m, nil
	}
	k := m.keys
	switch {
	case key.Matches(msg, k.Quit):
		m.quit = true
		return m, tea.Quit
	case key.Matches(msg, k.Up):
		t.move(-1)
	case key.Matches(msg, k.Down):
		t.move(1)
	case key.Matches(msg, k.PageUp):
		t.move(-t.page())
	case key.Matches(msg, k.PageDown):
		t.move(t.page())
	case key.Matches(msg, k.Top):
		t.top()
	case key.Matches(msg, k.Bottom):
		t.bottom()
	case key.Matches(msg, k.Filter):
		m.filtering = true
		m.input.SetValue(t.filter)
		m.input.CursorEnd()
		return m, m.input.Focus()
	case key.Matches(msg, k.Sort):
		t.cycleSort()
	case key.Matches(msg, k.Reverse):
		t.reverse()
	case key.Matches(msg, k.Enter):
		if m.view == ViewPolicies || m.view == ViewPorts {
			return m, m.drill()
		}
	case key.Matches(msg, k.Back):
		switch {
		case t.filter != "":
			t.setFilter("")
		case m.view != ViewPolicies:
			m.view = ViewPolicies
		}
	case key.Matches(msg, k.Policies):
		m.view = ViewPolicies
	case key.Matches(msg, k.Flows):
		if !m.hasFlows {
			return m, m.drill()
		}
		m.view = ViewFlows
	case key.Matches(msg, k.Ports):
		m.view = ViewPorts
	case key.Matches(msg, k.NextView):
		if m.view == ViewPolicies && !m.hasFlows {
			return m, m.drill()
		}
		m.view = (m.view + 1) % 3
	case key.Matches(msg, k.Pause):
		m.paused = !m.paused
	case key.Matches(msg, k.Refresh):
		return m, m.fetch()
	case key.Matches(msg, k.Help):
		m.showHelp = true
	}
	return m, nil
}

// drill opens the flows view of the selected policy (in the ports view:
// of the destination's first policy).
func (m *Model) drill() tea.Cmd {
	if m.snap == nil {
		return nil
	}
	name := ""
	switch m.view {
	case ViewPolicies:
		r, ok := m.tables[ViewPolicies].selected()
		if !ok {
			return nil
		}
		name = m.snap.Policies[r].Name
	case ViewPorts:
		r, ok := m.tables[ViewPorts].selected()
		if !ok || len(m.snap.Ports[r].Policies) == 0 {
			return nil
		}
		name = m.snap.Ports[r].Policies[0]
	}
	if name == NoPolicy {
		name = ""
	}
	if !m.hasFlows || name != m.flowsOf {
		m.flowsOf, m.hasFlows = name, true
		ft := m.tables[ViewFlows]
		ft.cursor, ft.offset = 0, 0
		ft.setRows(0, "", false)
	}
	m.view = ViewFlows
	return m.fetch()
}

// layout gives the tables the rows left by the header and footer.
func (m *Model) layout() {
	h := m.height - m.chromeLines()
	for _, t := range m.tables {
		t.height = max(1, h)
		t.clamp()
	}
}

// CurrentView returns the view on screen.
func (m *Model) CurrentView() View { return m.view }

// Paused says whether refreshing is paused.
func (m *Model) Paused() bool { return m.paused }

// FlowsOf returns the policy whose flows the flows view shows.
func (m *Model) FlowsOf() string { return m.flowsOf }
