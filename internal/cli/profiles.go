package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/spf13/cobra"

	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/pkg/profiles"
)

func newProfilesCmd(ios *IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profiles",
		Short: "List the Cilium versions egwct knows and what each means",
		Long: `A profile is what egwct knows about one Cilium minor version: the keys of
the timeout text with the agent flags they mirror and their node defaults,
the service timers that do not apply to egress flows, the pinned maps and
their layouts, the clock rules and known quirks.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newProfilesListCmd(ios), newProfilesShowCmd(ios))
	return cmd
}

// profilesSpec are the -o formats of profiles list and show.
var profilesSpec = printer.Spec{Default: printer.Table,
	Formats: []string{printer.Table, printer.JSON, printer.YAML, printer.Name, printer.JSONPath, printer.GoTemplate}}

func newProfilesListCmd(ios *IO) *cobra.Command {
	pf := printer.NewFlags(profilesSpec)
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the profiles",
		Example: "  egwct profiles list\n  egwct profiles list -o json",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			pr, err := newPrinter(pf)
			if err != nil {
				return err
			}
			doc := profileList{Header: printer.NewHeader("ProfileList"), Items: []profileView{}}
			var names []string
			for _, p := range profiles.All() {
				doc.Items = append(doc.Items, viewOf(p))
				names = append(names, p.Name)
			}
			return printErr(pr.Print(ios.Out, printer.View{Doc: doc, Names: func() []string { return names }, Table: func(w io.Writer, o printer.TableOptions) error {
				t := printer.NewTable(w, o.NoHeaders, "PROFILE", "CILIUM", "CHECKED AGAINST", "ESTABLISHED TCP DEFAULT", "MAPS", "QUIRKS")
				for _, p := range profiles.All() {
					cilium := fmt.Sprintf("%d.%d.x", p.Major, p.Minor)
					if p.Dev {
						cilium = fmt.Sprintf("%d.%d.0-dev", p.Major, p.Minor)
					}
					_ = t.Append(p.Name, cilium, checkedAgainst(p),
						secs(p.ParameterFor(profiles.StateEstablished).Default), fmt.Sprint(len(p.Maps)), fmt.Sprint(len(p.Quirks)))
				}
				return t.Render()
			}}))
		},
	}
	pf.Register(cmd)
	return cmd
}

func newProfilesShowCmd(ios *IO) *cobra.Command {
	pf := printer.NewFlags(profilesSpec)
	cmd := &cobra.Command{
		Use:   "show VERSION",
		Short: "Show what a Cilium version's timeout text means, and its maps",
		Example: `  egwct profiles show 1.18
  egwct profiles show v1.15.1     # also says which quirks that release has
  egwct profiles show main -o yaml`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeProfiles,
		RunE: func(_ *cobra.Command, args []string) error {
			pr, err := newPrinter(pf)
			if err != nil {
				return err
			}
			res, err := profiles.Resolve(args[0])
			if err != nil {
				return usageErrorf("%v", err)
			}
			doc := profileDoc{Header: printer.NewHeader("Profile"), profileView: viewOf(res.Profile)}
			return printErr(pr.Print(ios.Out, printer.View{Doc: doc, Names: func() []string { return []string{res.Profile.Name} },
				Table: func(w io.Writer, o printer.TableOptions) error { return showProfile(w, res, o.NoHeaders) }}))
		},
	}
	pf.Register(cmd)
	return cmd
}

// newTable returns a borderless, kubectl-like table (printer.NewTable).
func newTable(w io.Writer, header ...any) *tablewriter.Table {
	return printer.NewTable(w, false, header...)
}

func showProfile(w io.Writer, res profiles.Resolution, noHeaders bool) error {
	newTable := func(w io.Writer, header ...any) *tablewriter.Table { return printer.NewTable(w, noHeaders, header...) }
	p := res.Profile
	fmt.Fprintf(w, "Profile %s: Cilium %d.%d%s, checked against %s\n", p.Name, p.Major, p.Minor,
		map[bool]string{true: " (development)", false: ""}[p.Dev], checkedAgainst(p))
	for _, s := range p.Sources {
		fmt.Fprintf(w, "  source: cilium/cilium %s\n", s)
	}

	fmt.Fprintln(w, "\nTimeout text keys (values: Go durations, 1s up to the node's timeout; egwct can only shorten):")
	t := newTable(w, "KEY", "AGENT FLAG", "STATE", "NODE DEFAULT", "GOVERNS")
	for _, prm := range p.Parameters {
		_ = t.Append(prm.Key, "--"+prm.Flag, prm.State.String(), secs(prm.Default), prm.Summary)
	}
	if err := t.Render(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nService timers (refused: they time load-balancer entries, never egress-gateway flows):")
	t = newTable(w, "KEY", "AGENT FLAG", "NODE DEFAULT", "TIMES")
	for _, st := range p.ServiceTimers {
		_ = t.Append(st.Key, "--"+st.Flag, secs(st.Default), st.Summary)
	}
	if err := t.Render(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nMaps (pinned at <bpffs>/tc/globals/<name>; max entries: read from the map, the default is the agent's):")
	t = newTable(w, "NAME", "TYPE", "KEY", "VALUE", "FLAGS", "DEFAULT MAX", "NOTE")
	for _, m := range p.Maps {
		_ = t.Append(m.Name, m.Type.String(), fmt.Sprint(m.KeySize), fmt.Sprint(m.ValueSize), flagsString(m.Flags), fmt.Sprint(m.DefaultMaxEntries), m.Note)
	}
	if err := t.Render(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nct_entry (%d bytes):\n", p.CTEntry.Size)
	t = newTable(w, "OFFSET", "SIZE", "FIELD", "NOTE")
	for _, f := range p.CTEntry.Fields {
		_ = t.Append(fmt.Sprint(f.Offset), fmt.Sprint(f.Size), f.Name, f.Note)
	}
	if err := t.Render(); err != nil {
		return err
	}
	var bits []string
	for _, b := range p.CTEntry.FlagBits {
		bits = append(bits, fmt.Sprintf("%#04x %s", b.Mask, b.Name))
	}
	fmt.Fprintf(w, "flag bits at offset %d: %s\n", p.CTEntry.FlagsOffset, strings.Join(bits, ", "))

	fmt.Fprintf(w, "\nClock: %s by default; %s.\n  The node's mode is in %s.\n", p.Clock.Default, p.Clock.Jiffies, p.Clock.Where)
	fmt.Fprintf(w, "SNAT port-allocation retries: %d.\nCilium's GC deletes SNAT entries with a CT entry: %s.\n", p.SNATRetries, p.GCDeletesNAT)

	if len(p.Quirks) > 0 {
		fmt.Fprintln(w, "\nQuirks:")
		for _, q := range p.Quirks {
			mark := ""
			if res.Version.Patch >= 0 && q.AppliesTo(res.Version) {
				mark = fmt.Sprintf(" [present in %s]", res.Version)
			}
			var ranges []string
			for _, r := range q.Affects {
				ranges = append(ranges, r.String())
			}
			fmt.Fprintf(w, "  %s (%s)%s: %s.\n    source: %s\n", q.ID, strings.Join(ranges, ", "), mark, q.Summary, q.Source)
		}
	}
	return nil
}

func checkedAgainst(p *profiles.Profile) string {
	switch {
	case p.Dev:
		return fmt.Sprintf("%d.%d-dev, not verified", p.Major, p.Minor)
	case len(p.VerifiedAgainst) > 0:
		vs := make([]string, len(p.VerifiedAgainst))
		for i, v := range p.VerifiedAgainst {
			vs[i] = v.String()
		}
		return strings.Join(vs, ", ")
	case p.Checked == (profiles.Version{}):
		return fmt.Sprintf("v%d.%d branch point", p.Major, p.Minor)
	}
	return p.Checked.String() + " (by hand)"
}

func secs(d time.Duration) string { return fmt.Sprintf("%ds", d/time.Second) }

func flagsString(flags []uint32) string {
	names := map[uint32]string{profiles.FlagNoPrealloc: "NO_PREALLOC", profiles.FlagNoCommonLRU: "NO_COMMON_LRU", profiles.FlagRdonlyProg: "RDONLY_PROG"}
	var alts []string
	for _, f := range flags {
		if f == 0 {
			alts = append(alts, "0")
			continue
		}
		var parts []string
		for bit := uint32(1); bit != 0; bit <<= 1 {
			if f&bit != 0 {
				n, ok := names[bit]
				if !ok {
					n = fmt.Sprintf("%#x", bit)
				}
				parts = append(parts, n)
			}
		}
		alts = append(alts, strings.Join(parts, "|"))
	}
	return strings.Join(alts, " or ")
}

// profileList is the document of profiles list (docs/schemas/profile-list.json).
type profileList struct {
	printer.Header
	Items []profileView `json:"items"`
}

// profileDoc is the document of profiles show (docs/schemas/profile.json).
type profileDoc struct {
	printer.Header
	profileView
}

// profileView is the -o json|yaml form of a profile: durations in
// seconds, names for enums.
type profileView struct {
	Name            string            `json:"name"`
	Cilium          string            `json:"cilium"`
	Development     bool              `json:"development,omitempty"`
	CheckedAgainst  string            `json:"checkedAgainst"`
	Sources         []string          `json:"sources"`
	Parameters      []paramView       `json:"parameters"`
	ServiceTimers   []paramView       `json:"serviceTimers"`
	Maps            []mapView         `json:"maps"`
	CTEntry         []fieldView       `json:"ctEntry"`
	CTEntryFlagBits map[string]uint16 `json:"ctEntryFlagBits"`
	Clock           clockView         `json:"clock"`
	SNATRetries     int               `json:"snatRetries"`
	GCDeletesNAT    string            `json:"gcDeletesNAT"`
	Quirks          []quirkView       `json:"quirks,omitempty"`
}

type paramView struct {
	Key            string `json:"key"`
	Flag           string `json:"flag"`
	Macro          string `json:"macro"`
	State          string `json:"state,omitempty"`
	DefaultSeconds int64  `json:"defaultSeconds"`
	MinSeconds     int64  `json:"minSeconds,omitempty"`
	Summary        string `json:"summary"`
}

type mapView struct {
	Name              string   `json:"name"`
	Role              string   `json:"role"`
	Family            int      `json:"family"`
	Type              string   `json:"type"`
	KeySize           uint32   `json:"keySize"`
	ValueSize         uint32   `json:"valueSize"`
	Flags             []uint32 `json:"flags"`
	DefaultMaxEntries uint32   `json:"defaultMaxEntries"`
	Optional          bool     `json:"optional,omitempty"`
	Note              string   `json:"note,omitempty"`
}

type fieldView struct {
	Name   string `json:"name"`
	Offset int    `json:"offset"`
	Size   int    `json:"size"`
	Note   string `json:"note,omitempty"`
}

type clockView struct {
	Default   string `json:"default"`
	Jiffies   string `json:"jiffies"`
	Shift     uint   `json:"shift"`
	HZChoices []int  `json:"hzChoices"`
	Where     string `json:"where"`
}

type quirkView struct {
	ID      string   `json:"id"`
	Affects []string `json:"affects"`
	Summary string   `json:"summary"`
	Source  string   `json:"source"`
}

func viewOf(p *profiles.Profile) profileView {
	v := profileView{
		Name: p.Name, Cilium: fmt.Sprintf("%d.%d", p.Major, p.Minor), Development: p.Dev,
		CheckedAgainst: checkedAgainst(p), Sources: p.Sources,
		CTEntryFlagBits: map[string]uint16{},
		Clock:           clockView{Default: p.Clock.Default, Jiffies: p.Clock.Jiffies, Shift: p.Clock.Shift, HZChoices: p.Clock.HZChoices, Where: p.Clock.Where},
		SNATRetries:     p.SNATRetries, GCDeletesNAT: p.GCDeletesNAT,
	}
	for _, f := range p.CTEntry.Fields {
		v.CTEntry = append(v.CTEntry, fieldView{Name: f.Name, Offset: f.Offset, Size: f.Size, Note: f.Note})
	}
	for _, prm := range p.Parameters {
		v.Parameters = append(v.Parameters, paramView{Key: prm.Key, Flag: prm.Flag, Macro: prm.Macro, State: prm.State.String(),
			DefaultSeconds: int64(prm.Default / time.Second), MinSeconds: int64(profiles.MinTimeout / time.Second), Summary: prm.Summary})
	}
	for _, st := range p.ServiceTimers {
		v.ServiceTimers = append(v.ServiceTimers, paramView{Key: st.Key, Flag: st.Flag, Macro: st.Macro,
			DefaultSeconds: int64(st.Default / time.Second), Summary: st.Summary})
	}
	for _, m := range p.Maps {
		v.Maps = append(v.Maps, mapView{Name: m.Name, Role: string(m.Role), Family: m.Family, Type: m.Type.String(),
			KeySize: m.KeySize, ValueSize: m.ValueSize, Flags: m.Flags, DefaultMaxEntries: m.DefaultMaxEntries,
			Optional: m.Optional, Note: m.Note})
	}
	for _, b := range p.CTEntry.FlagBits {
		v.CTEntryFlagBits[b.Name] = b.Mask
	}
	for _, q := range p.Quirks {
		qv := quirkView{ID: q.ID, Summary: q.Summary, Source: q.Source}
		for _, r := range q.Affects {
			qv.Affects = append(qv.Affects, r.String())
		}
		v.Quirks = append(v.Quirks, qv)
	}
	return v
}
