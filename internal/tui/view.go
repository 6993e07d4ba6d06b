package tui

import (
	"cmp"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
)

var (
	styleTitle    = lipgloss.NewStyle().Bold(true)
	styleBanner   = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("1"))
	styleWarn     = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
	styleHeader   = lipgloss.NewStyle().Bold(true)
	styleSelected = lipgloss.NewStyle().Reverse(true)
	styleDim      = lipgloss.NewStyle().Faint(true)
)

// View renders the screen.
func (m *Model) View() string {
	if m.quit {
		return ""
	}
	var b strings.Builder
	for _, l := range m.headerLines() {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString(m.tabs())
	b.WriteByte('\n')
	t := m.tables[m.view]
	if m.showHelp {
		b.WriteString(m.fullHelp())
		return b.String()
	}
	b.WriteString(styleHeader.Render(t.header(m.width)))
	b.WriteByte('\n')
	lines := t.lines(m.width, func(s string) string { return styleSelected.Render(s) }, emphasize)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	for i := len(lines); i < t.page(); i++ {
		b.WriteByte('\n')
	}
	b.WriteString(m.status())
	b.WriteByte('\n')
	b.WriteString(fit(m.help.ShortHelpView(m.keys.ShortHelp()), m.width))
	return b.String()
}

// emphasize styles a cell of a level: 1 warn, 2 alert.
func emphasize(level int, cell string) string {
	if level >= 2 {
		return styleBanner.Render(cell)
	}
	return styleWarn.Render(cell)
}

// portLevel rates port use: alert from half the capacity, warn from a
// quarter.
func portLevel(used, capacity int) int {
	switch {
	case used*2 >= capacity:
		return 2
	case used*4 >= capacity:
		return 1
	}
	return 0
}

// headerLines are the node facts, warnings and banners; on a short
// terminal only the first line and the banners stay.
func (m *Model) headerLines() []string {
	title := "egwct top"
	var facts, sweeper []string
	var warns []string
	if s := m.snap; s != nil {
		title += " · " + Clean(s.Node.Profile) + " · clock " + Clean(s.Node.Clock) +
			" · " + s.Taken.Format("15:04:05") + " · read " + fmtCost(s.Cost)
		var maps []string
		for _, mf := range s.Node.Maps {
			pct := 0
			if mf.Max > 0 {
				pct = mf.Entries * 100 / mf.Max
			}
			maps = append(maps, fmt.Sprintf("%s %d/%d (%d%%)", strings.TrimPrefix(Clean(mf.Name), "cilium_"), mf.Entries, mf.Max, pct))
		}
		if s.Node.PortsAge > 0 {
			maps = append([]string{"SNAT read " + fmtDur(s.Node.PortsAge) + " ago"}, maps...)
		}
		if s.Node.PortsPending {
			maps = append([]string{"SNAT: reading…"}, maps...)
		}
		if len(maps) > 0 {
			facts = append(facts, "maps: "+strings.Join(maps, " · "))
		}
		sweeper = append(sweeper, "sweeper: "+Clean(s.Node.Sweeper))
		for _, w := range s.Node.Warnings {
			warns = append(warns, styleWarn.Render(fit("! "+Clean(w), m.width)))
		}
	} else {
		title += " · reading…"
	}
	if iv := m.interval(); iv > m.refresh {
		title += " · every " + fmtDur(iv) + " (reads take " + fmtCost(m.snap.Cost) + ")"
	} else {
		title += " · every " + fmtDur(m.refresh)
	}
	if m.paused {
		title += " · PAUSED"
	}
	out := []string{styleTitle.Render(fit(title, m.width))}
	var banners []string
	if m.snap != nil && m.snap.Banner != "" {
		banners = append(banners, styleBanner.Render(fit("⚠ "+Clean(m.snap.Banner), m.width)))
	}
	if m.err != nil {
		banners = append(banners, styleBanner.Render(fit("⚠ "+Clean(m.err.Error())+" (retrying)", m.width)))
	}
	// Tabs, table header, status and help take 4 lines; keep 3 for rows.
	room := m.height - 4 - 3 - len(out) - len(banners)
	for _, l := range append(append(facts, sweeper...), warns...) {
		if room <= 0 {
			break
		}
		out = append(out, fit(l, m.width))
		room--
	}
	return append(out, banners...)
}

// chromeLines counts the lines that are not table rows.
func (m *Model) chromeLines() int {
	return len(m.headerLines()) + 4
}

func (m *Model) tabs() string {
	names := []string{"1 Policies", "2 Flows", "3 Ports"}
	if m.hasFlows {
		names[1] += ": " + Clean(policyLabel(m.flowsOf))
	}
	for i := range names {
		if View(i) == m.view {
			names[i] = "[" + names[i] + "]"
		} else {
			names[i] = " " + names[i] + " "
		}
	}
	return fit(strings.Join(names, " "), m.width)
}

func (m *Model) status() string {
	if m.filtering {
		return fit(m.input.View(), m.width)
	}
	t := m.tables[m.view]
	s := fmt.Sprintf("%d/%d", min(t.cursor+1, len(t.idx)), len(t.idx))
	if len(t.idx) != t.n {
		s += fmt.Sprintf(" of %d", t.n)
	}
	s += " · sort " + t.cols[t.sortCol].title
	if t.filter != "" {
		s += " · filter " + strconv.Quote(t.filter) + " (esc clears)"
	}
	if m.view == ViewFlows && m.snap != nil && m.hasFlows && m.snap.FlowsOf != m.flowsOf {
		s += " · reading flows…"
	}
	return styleDim.Render(fit(s, m.width))
}

func (m *Model) fullHelp() string {
	var b strings.Builder
	b.WriteString("Keys (any key closes this help)\n\n")
	for _, group := range m.keys.FullHelp() {
		for _, k := range group {
			h := k.Help()
			fmt.Fprintf(&b, "  %-14s %s\n", h.Key, h.Desc)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func policyLabel(name string) string {
	if name == "" {
		return NoPolicy
	}
	return name
}

// The policies view.
func (m *Model) policiesTable() *table {
	t := &table{cols: []column{
		{"POLICY", 22, false}, {"FLOWS", 7, true},
		{"EST", 7, true}, {"SYN", 6, true}, {"CLOSE", 6, true}, {"OTHER", 6, true},
		{"IDLE50", 7, true}, {"IDLE99", 7, true},
		{"EXPIRING", 9, true}, {"OVER", 6, true}, {"EXPIRED", 8, true},
		{"RECLAIMED", 10, true}, {"/S", 5, true},
		{"PORTS", 10, true}, {"TCP TO", 14, true}, {"OTHER TO", 14, true},
	}}
	p := func(r int) *Policy { return &m.snap.Policies[r] }
	t.key = func(r int) string { return p(r).Name }
	t.level = func(r, c int) int {
		x := p(r)
		switch {
		case c == 9 && x.Over > 0, c == 10 && x.Expired > 0:
			return 1
		case c == 13:
			return portLevel(x.WorstPorts, m.snap.Node.Ports())
		}
		return 0
	}
	t.search = func(r int) string { return p(r).Name }
	t.text = func(r, c int) string {
		x := p(r)
		switch c {
		case 0:
			return x.Name
		case 1:
			return strconv.Itoa(x.Total)
		case 2:
			return strconv.Itoa(x.Flows[profiles.StateEstablished])
		case 3:
			return strconv.Itoa(x.Flows[profiles.StateSyn])
		case 4:
			return strconv.Itoa(x.Flows[profiles.StateClosing])
		case 5:
			return strconv.Itoa(x.Flows[profiles.StateNonTCP])
		case 6:
			return fmtDur(x.IdleP50)
		case 7:
			return fmtDur(x.IdleP99)
		case 8:
			return strconv.Itoa(x.Expiring)
		case 9:
			return strconv.Itoa(x.Over)
		case 10:
			return strconv.Itoa(x.Expired)
		case 11:
			return strconv.FormatUint(x.Reclaimed, 10)
		case 12:
			return strconv.FormatFloat(m.rate[x.Name], 'f', 0, 64)
		case 13:
			if x.WorstPorts == 0 {
				return "-"
			}
			return fmt.Sprintf("%d %d%%", x.WorstPorts, x.WorstPorts*100/m.snap.Node.Ports())
		case 14:
			return m.timeouts(x, profiles.StateEstablished)
		case 15:
			return m.timeouts(x, profiles.StateNonTCP)
		}
		return ""
	}
	t.cmp = func(a, b, c int) int {
		x, y := p(a), p(b)
		switch c {
		case 0:
			return strings.Compare(x.Name, y.Name)
		case 1:
			return cmp.Compare(x.Total, y.Total)
		case 2, 3, 4, 5:
			st := [...]profiles.State{profiles.StateEstablished, profiles.StateSyn, profiles.StateClosing, profiles.StateNonTCP}[c-2]
			return cmp.Compare(x.Flows[st], y.Flows[st])
		case 6:
			return cmp.Compare(x.IdleP50, y.IdleP50)
		case 7:
			return cmp.Compare(x.IdleP99, y.IdleP99)
		case 8:
			return cmp.Compare(x.Expiring, y.Expiring)
		case 9:
			return cmp.Compare(x.Over, y.Over)
		case 10:
			return cmp.Compare(x.Expired, y.Expired)
		case 11:
			return cmp.Compare(x.Reclaimed, y.Reclaimed)
		case 12:
			return cmp.Compare(m.rate[x.Name], m.rate[y.Name])
		case 13:
			return cmp.Compare(x.WorstPorts, y.WorstPorts)
		case 14:
			return cmp.Compare(x.Timeouts[profiles.StateEstablished], y.Timeouts[profiles.StateEstablished])
		case 15:
			return cmp.Compare(x.Timeouts[profiles.StateNonTCP], y.Timeouts[profiles.StateNonTCP])
		}
		return 0
	}
	return t
}

// timeouts prints the policy's timeout of a state beside the node's.
func (m *Model) timeouts(p *Policy, st profiles.State) string {
	node := m.snap.Node.Timeouts[st]
	if p.Timeouts[st] == 0 {
		return "-/" + fmtDur(node)
	}
	return fmtDur(p.Timeouts[st]) + "/" + fmtDur(node)
}

// The flows view.
func (m *Model) flowsTable() *table {
	t := &table{cols: []column{
		{"SOURCE", addrPortWidth, false}, {"DESTINATION", addrPortWidth, false}, {"PROTO", 6, false}, {"STATE", 12, false},
		{"IDLE", 8, true}, {"NODE LEFT", 10, true}, {"POLICY LEFT", 12, true}, {"EGRESS", egressPortWidth, false},
	}, sortCol: 4, desc: true}
	f := func(r int) *Flow { return &m.snap.Flows[r] }
	t.level = func(r, c int) int {
		x := f(r)
		if (c == 5 && x.Remaining < 0) || (c == 6 && x.HasPolicy && x.PolicyRemaining < 0) {
			return 1
		}
		return 0
	}
	t.text = func(r, c int) string {
		x := f(r)
		switch c {
		case 0:
			return x.Src.String()
		case 1:
			return x.Dst.String()
		case 2:
			return ctmap.ProtoName(x.Proto)
		case 3:
			return x.State.String()
		case 4:
			return fmtDur(x.Idle)
		case 5:
			return fmtDur(x.Remaining)
		case 6:
			if !x.HasPolicy {
				return "-"
			}
			return fmtDur(x.PolicyRemaining)
		case 7:
			if !x.Egress.IsValid() {
				return "-"
			}
			return x.Egress.String()
		}
		return ""
	}
	var buf []byte
	t.search = func(r int) string {
		x := f(r)
		b := x.Src.AppendTo(buf[:0])
		b = append(x.Dst.AppendTo(append(b, ' ')), ' ')
		b = append(append(append(b, ctmap.ProtoName(x.Proto)...), ' '), x.State.String()...)
		if x.Egress.IsValid() {
			b = x.Egress.AppendTo(append(b, ' '))
		}
		buf = b
		return string(b)
	}
	t.cmp = func(a, b, c int) int {
		x, y := f(a), f(b)
		switch c {
		case 0:
			return x.Src.Compare(y.Src)
		case 1:
			return x.Dst.Compare(y.Dst)
		case 2:
			return cmp.Compare(x.Proto, y.Proto)
		case 3:
			return cmp.Compare(x.State, y.State)
		case 4:
			return cmp.Compare(x.Idle, y.Idle)
		case 5:
			return cmp.Compare(x.Remaining, y.Remaining)
		case 6:
			return cmp.Compare(policyLeft(x), policyLeft(y))
		case 7:
			return x.Egress.Compare(y.Egress)
		}
		return 0
	}
	return t
}

func policyLeft(f *Flow) time.Duration {
	if !f.HasPolicy {
		return 1<<63 - 1
	}
	return f.PolicyRemaining
}

// Widths of the address columns: sized for IPv4; IPv6 rows widen them
// to their widest text, up to maxAddrWidth ("[" 39 "]:65535").
const (
	addrPortWidth   = 22 // 255.255.255.255:65535
	addrWidth       = 16 // 255.255.255.255
	egressPortWidth = 24
	maxAddrWidth    = 47
)

// fitAddressColumns widens the address columns of the flows and ports
// views to the IPv6 addresses of the snapshot's rows. Only IPv6 rows are
// measured: on an IPv4 node this costs one pass over the rows.
func (m *Model) fitAddressColumns() {
	src, dst, egress := addrPortWidth, addrPortWidth, egressPortWidth
	for i := range m.snap.Flows {
		f := &m.snap.Flows[i]
		if f.Src.Addr().Is6() || f.Dst.Addr().Is6() || f.Egress.Addr().Is6() {
			src = max(src, min(len(f.Src.String()), maxAddrWidth))
			dst = max(dst, min(len(f.Dst.String()), maxAddrWidth))
			egress = max(egress, min(len(f.Egress.String()), maxAddrWidth))
		}
	}
	ft := m.tables[ViewFlows]
	ft.cols[0].width, ft.cols[1].width, ft.cols[7].width = src, dst, egress
	pEgress, pDst := addrWidth, addrPortWidth
	for i := range m.snap.Ports {
		p := &m.snap.Ports[i]
		if p.Dst.Is6() || p.Egress.Is6() {
			pEgress = max(pEgress, min(len(p.Egress.String()), maxAddrWidth))
			pDst = max(pDst, min(len(netip.AddrPortFrom(p.Dst, p.DstPort).String()), maxAddrWidth))
		}
	}
	pt := m.tables[ViewPorts]
	pt.cols[0].width, pt.cols[1].width = pEgress, pDst
}

// The ports view.
func (m *Model) portsTable() *table {
	t := &table{cols: []column{
		{"EGRESS IP", addrWidth, false}, {"DESTINATION", addrPortWidth, false}, {"PROTO", 6, false},
		{"USED", 6, true}, {"USE%", 5, true}, {"PRESSURE", 13, false}, {"POLICIES", 40, false},
	}, sortCol: 3, desc: true}
	p := func(r int) *Port { return &m.snap.Ports[r] }
	t.level = func(r, c int) int {
		if c >= 3 && c <= 5 {
			return portLevel(p(r).Used, m.snap.Node.Ports())
		}
		return 0
	}
	t.key = func(r int) string {
		x := p(r)
		return fmt.Sprint(x.Egress, x.Dst, x.DstPort, x.Proto)
	}
	t.text = func(r, c int) string {
		x := p(r)
		switch c {
		case 0:
			return x.Egress.String()
		case 1:
			return netip.AddrPortFrom(x.Dst, x.DstPort).String() // [v6]:port
		case 2:
			return ctmap.ProtoName(x.Proto)
		case 3:
			return strconv.Itoa(x.Used)
		case 4:
			return strconv.Itoa(x.Used*100/m.snap.Node.Ports()) + "%"
		case 5:
			return bar(x.Used, m.snap.Node.Ports(), 12)
		case 6:
			return strings.Join(x.Policies, ",")
		}
		return ""
	}
	t.cmp = func(a, b, c int) int {
		x, y := p(a), p(b)
		switch c {
		case 0:
			return x.Egress.Compare(y.Egress)
		case 1:
			if d := x.Dst.Compare(y.Dst); d != 0 {
				return d
			}
			return cmp.Compare(x.DstPort, y.DstPort)
		case 2:
			return cmp.Compare(x.Proto, y.Proto)
		case 3, 4, 5:
			return cmp.Compare(x.Used, y.Used)
		case 6:
			return strings.Compare(strings.Join(x.Policies, ","), strings.Join(y.Policies, ","))
		}
		return 0
	}
	return t
}

// bar draws used/total in w cells.
func bar(used, total, w int) string {
	n := min(w, (used*w+total-1)/total)
	return strings.Repeat("█", n) + strings.Repeat("·", w-n)
}

// fmtDur prints a duration in at most two units: 2h13m, 4m05s, 9s, -3s.
func fmtDur(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDur(-d)
	}
	s := int64(d / time.Second)
	switch {
	case d > 0 && d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case s >= 86400:
		return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
	case s >= 3600:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	case s >= 60:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%ds", s)
}

func fmtCost(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	return d.Round(10 * time.Millisecond).String()
}
