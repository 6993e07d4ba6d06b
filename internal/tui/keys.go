package tui

import "github.com/charmbracelet/bubbles/key"

// KeyMap are top's keys, as k9s and bpftop users expect them.
type KeyMap struct {
	Up, Down, PageUp, PageDown, Top, Bottom key.Binding
	Enter, Back, Filter, Sort, Reverse      key.Binding
	Policies, Flows, Ports, NextView        key.Binding
	Pause, Refresh, Help, Quit              key.Binding
}

// DefaultKeys returns the key map.
func DefaultKeys() KeyMap {
	b := func(help, desc string, keys ...string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
	}
	return KeyMap{
		Up:       b("↑/k", "up", "up", "k"),
		Down:     b("↓/j", "down", "down", "j"),
		PageUp:   b("pgup/ctrl+b", "page up", "pgup", "ctrl+b"),
		PageDown: b("pgdn/ctrl+f", "page down", "pgdown", "ctrl+f", " "),
		Top:      b("g/home", "first row", "g", "home"),
		Bottom:   b("G/end", "last row", "G", "end"),
		Enter:    b("enter", "flows of policy", "enter"),
		Back:     b("esc", "back", "esc"),
		Filter:   b("/", "filter", "/"),
		Sort:     b("s", "sort", "s"),
		Reverse:  b("S", "reverse sort", "S"),
		Policies: b("1", "policies", "1"),
		Flows:    b("2", "flows", "2"),
		Ports:    b("3", "ports", "3"),
		NextView: b("tab", "next view", "tab"),
		Pause:    b("p", "pause", "p"),
		Refresh:  b("r", "refresh now", "r"),
		Help:     b("?", "help", "?"),
		Quit:     b("q", "quit", "q", "ctrl+c"),
	}
}

// ShortHelp is the one line at the bottom.
func (k KeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Up, k.Down, k.Enter, k.Back, k.Filter, k.Sort, k.NextView, k.Pause, k.Help, k.Quit}
}

// FullHelp is the help screen, in columns.
func (k KeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{k.Up, k.Down, k.PageUp, k.PageDown, k.Top, k.Bottom},
		{k.Enter, k.Back, k.Filter, k.Sort, k.Reverse},
		{k.Policies, k.Flows, k.Ports, k.NextView},
		{k.Pause, k.Refresh, k.Help, k.Quit},
	}
}
