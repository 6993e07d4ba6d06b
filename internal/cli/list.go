package cli

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/spf13/cobra"

	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
)

// listOptions are shared by ct list, nat list and egress list.
type listOptions struct {
	io       *IO
	node     nodeFlags
	print    printer.Flags
	Src, Dst string
	Proto    string
	State    string
	IdleOver time.Duration
	Expired  bool

	src, dst netip.Prefix
	proto    int // -1: any
	state    int // -1: any
	printer  *printer.Printer
}

// listSpec are the -o formats of ct, nat and egress list.
var listSpec = printer.Spec{Default: printer.Table,
	Formats: []string{printer.Table, printer.Wide, printer.JSON, printer.YAML, printer.JSONPath, printer.GoTemplate}}

func (o *listOptions) registerOutput(cmd *cobra.Command) {
	o.node.register(cmd)
	o.print = *printer.NewFlags(listSpec)
	o.print.Register(cmd)
}

func (o *listOptions) registerFilters(cmd *cobra.Command, states bool) {
	f := cmd.Flags()
	f.StringVar(&o.Src, "src", "", "only flows from this pod IP or CIDR")
	f.StringVar(&o.Dst, "dst", "", "only flows to this IP or CIDR")
	f.StringVar(&o.Proto, "proto", "", "only this protocol: tcp, udp, icmp, icmpv6, sctp or a number")
	if states {
		f.StringVar(&o.State, "state", "", "only entries in this state: syn, established, closing or non-tcp")
		f.DurationVar(&o.IdleOver, "idle-over", 0, "only entries idle for longer than this, e.g. 5m")
		f.BoolVar(&o.Expired, "expired", false, "only entries whose lifetime has passed (waiting for Cilium's GC)")
		_ = cmd.RegisterFlagCompletionFunc("state", cobra.FixedCompletions([]string{"syn", "established", "closing", "non-tcp"}, cobra.ShellCompDirectiveNoFileComp))
	}
}

// parseFilters checks the flags before any map is opened.
func (o *listOptions) parseFilters() error {
	var err error
	if o.printer, err = newPrinter(&o.print); err != nil {
		return err
	}
	if o.src, err = parsePrefix("--src", o.Src); err != nil {
		return err
	}
	if o.dst, err = parsePrefix("--dst", o.Dst); err != nil {
		return err
	}
	o.proto = -1
	if o.Proto != "" {
		switch strings.ToLower(o.Proto) {
		case "tcp":
			o.proto = int(ctmap.ProtoTCP)
		case "udp":
			o.proto = int(ctmap.ProtoUDP)
		case "icmp":
			o.proto = int(ctmap.ProtoICMP)
		case "icmpv6":
			o.proto = int(ctmap.ProtoICMPv6)
		case "sctp":
			o.proto = int(ctmap.ProtoSCTP)
		default:
			n, err := strconv.ParseUint(o.Proto, 10, 8)
			if err != nil {
				return usageErrorf("--proto: %q is not tcp, udp, icmp, icmpv6, sctp or a protocol number", o.Proto)
			}
			o.proto = int(n)
		}
	}
	o.state = -1
	if o.State != "" {
		for _, s := range profiles.States {
			if s.String() == o.State {
				o.state = int(s)
			}
		}
		if o.state < 0 {
			return usageErrorf("--state: %q is not syn, established, closing or non-tcp", o.State)
		}
	}
	if o.IdleOver < 0 {
		return usageErrorf("--idle-over must not be negative")
	}
	return nil
}

func parsePrefix(flag, s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, usageErrorf("%s: %q is not an IP or CIDR", flag, s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, usageErrorf("%s: %q is not an IP or CIDR", flag, s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func matchPrefix(p netip.Prefix, a netip.Addr) bool {
	return !p.IsValid() || p.Contains(a)
}

// output writes records in the chosen format: tables are buffered, the
// other formats stream as one list document.
type output struct {
	w      *bufio.Writer
	table  *tablewriter.Table
	stream *printer.Stream
	buf    []byte
	rec    record
	sub    record
	narrow int // the columns of table (not wide) output
	rows   int
	keys   []string
	names  []string
}

func newOutput(w io.Writer, p *printer.Printer, kind string, header, wide []string) *output {
	o := &output{}
	if !p.Tabular() {
		o.stream = p.Stream(w, kind)
		return o
	}
	o.w = bufio.NewWriterSize(w, 64<<10)
	cols := header
	if p.Wide() {
		cols = append(append([]string(nil), header...), wide...)
	}
	hdr := make([]any, len(cols))
	for i, c := range cols {
		hdr[i] = c
	}
	o.table = printer.NewTable(o.w, p.NoHeaders, hdr...)
	o.narrow = len(header)
	return o
}

// row adds a table row (cells beyond the header are wide-only).
func (o *output) row(cells []string, wide bool) {
	if !wide {
		cells = cells[:o.narrow]
	}
	o.rows++
	row := make([]any, len(cells))
	for i, c := range cells {
		row[i] = clean(c)
	}
	_ = o.table.Append(row...)
}

// emit writes o.rec as a JSON or YAML list item.
func (o *output) emit() error {
	o.buf = o.buf[:0]
	if o.stream.YAML() {
		o.buf = o.rec.appendYAML(o.buf, "- ", "  ")
	} else {
		o.buf = o.rec.appendJSON(o.buf)
	}
	return o.stream.Item(o.buf)
}

func (o *output) close() error {
	if o.stream != nil {
		return o.stream.Close()
	}
	if o.rows > 0 { // no rows: not even a header, as kubectl
		if err := o.table.Render(); err != nil {
			return err
		}
	}
	return o.w.Flush()
}

func fmtRemaining(d time.Duration) string {
	if d < 0 {
		return "-" + shortDur(-d)
	}
	return shortDur(d)
}

// shortDur prints 1h2m3s, 4m5s, 6s (ms only below 10 s, for jiffies).
func shortDur(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func seconds(d time.Duration) float64 { return printer.Seconds(d) }

func newCTCmd(ios *IO) *cobra.Command {
	cmd := &cobra.Command{Use: "ct", Short: "Connection-tracking entries of Cilium's CT maps"}
	cmd.AddCommand(newCTListCmd(ios))
	return cmd
}

func newCTListCmd(ios *IO) *cobra.Command {
	o := &listOptions{io: ios}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List CT entries with their state, idle time and remaining lifetime",
		Long: `List the entries of Cilium's global CT maps (cilium_ct4_global,
cilium_ct_any4_global and their IPv6 twins), like
"cilium-dbg bpf ct list global -d" but with the flow's orientation, its
state, how long it has been idle and how long it has left.

A flow is shown as pod P:p → destination W:w. Idle time is
now − (lifetime − node timeout of the state); remaining is lifetime − now,
negative once the entry has expired and waits for Cilium's GC. Both need the
datapath's clock: it is read from the agent's agent-runtime-config.json, or
set with --clock and --hz.

-o json prints one CTEntryList document, streamed with one entry per line
(docs/schemas/ct-entry-list.json, docs/listing.md).`,
		Example: `  # Established flows of one pod, idle for over 5 minutes
  egwct ct list --cilium-version 1.18.3 --src 10.0.1.5 --state established --idle-over 5m

  # Entries expired but not yet collected: their destinations
  egwct ct list --cilium-version 1.18.3 --expired -o jsonpath='{range .items[*]}{.dstIP}{"\n"}{end}'`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runCTList(o) },
	}
	o.registerOutput(cmd)
	o.registerFilters(cmd, true)
	return cmd
}

// prepare checks the flags, resolves the node and opens its maps of the
// roles; the caller closes the maps.
func (o *listOptions) prepare(roles ...profiles.MapRole) (*node, []*ctmap.Map, error) {
	if err := o.parseFilters(); err != nil {
		return nil, nil, err
	}
	n, err := o.node.open()
	if err != nil {
		return nil, nil, err
	}
	maps, err := n.openMaps(o.node.BPFFS, roles...)
	return n, maps, err
}

func runCTList(o *listOptions) error {
	n, maps, err := o.prepare(profiles.RoleCTTCP, profiles.RoleCTAny)
	if err != nil {
		return err
	}
	defer closeAll(maps)
	times, err := n.times()
	if err != nil {
		return err
	}
	fmt.Fprintf(o.io.ErrOut, "# %s\n", n.describe())
	out := newOutput(o.io.Out, o.printer, "CTEntryList",
		[]string{"PROTO", "SOURCE", "DESTINATION", "DIR", "STATE", "IDLE", "REMAINING"},
		[]string{"MAP", "FLAGS", "TX_SEEN", "RX_SEEN", "SEC_ID", "LIFETIME"})
	layout := n.Resolution.Profile.CTEntry
	var c ctmap.CT
	for _, m := range maps {
		err := m.Walk(func(k, v []byte) error {
			var err error
			if c.Key, err = ctmap.DecodeTuple(k); err != nil {
				return err
			}
			copy(c.Value[:], v)
			return o.ctEntry(out, m, k, &c, times, layout)
		})
		if err != nil {
			return envError(fmt.Errorf("%s: %w", m.Path, err))
		}
	}
	return printErr(out.close())
}

func (o *listOptions) ctEntry(out *output, m *ctmap.Map, key []byte, c *ctmap.CT, t ctmap.Times, layout profiles.CTEntryLayout) error {
	src, dst := c.Flow()
	if !matchPrefix(o.src, src.Addr()) || !matchPrefix(o.dst, dst.Addr()) ||
		(o.proto >= 0 && int(c.Key.NextHdr) != o.proto) {
		return nil
	}
	state := c.State()
	if o.state >= 0 && int(state) != o.state {
		return nil
	}
	lifetime := c.Value.Lifetime()
	remaining, idle := t.Remaining(lifetime), t.Idle(state, lifetime)
	if (o.Expired && remaining >= 0) || (o.IdleOver > 0 && idle < o.IdleOver) {
		return nil
	}
	if out.table != nil {
		out.row([]string{
			ctmap.ProtoName(c.Key.NextHdr), src.String(), dst.String(), c.Key.FlagsString(), state.String(),
			shortDur(max(idle, 0)), fmtRemaining(remaining),
			m.Spec.Name, flagNames(layout, c.Value.Flags()), tcpFlags(c.Value.TxFlagsSeen()), tcpFlags(c.Value.RxFlagsSeen()),
			strconv.FormatUint(uint64(c.Value.SrcSecID()), 10), strconv.FormatUint(uint64(lifetime), 10),
		}, o.printer.Wide())
		return nil
	}
	if !out.stream.YAML() {
		// The hot path of large dumps: encoded straight into the buffer.
		out.buf = appendCTJSON(out.buf[:0], m.Spec.Name, key, c, src, dst, state, remaining, idle, out.rawKeys(layout), layout)
		return out.stream.Item(out.buf)
	}
	r := &out.rec
	r.reset()
	r.str("map", m.Spec.Name)
	r.str("proto", ctmap.ProtoName(c.Key.NextHdr))
	r.addr("srcIP", src.Addr())
	r.uint("srcPort", uint64(src.Port()))
	r.addr("dstIP", dst.Addr())
	r.uint("dstPort", uint64(dst.Port()))
	r.str("tupleFlags", c.Key.FlagsString())
	r.str("state", state.String())
	r.float("remainingSeconds", seconds(remaining))
	r.float("idleSeconds", seconds(idle))
	raw := &out.sub
	raw.reset()
	raw.hex("keyHex", key)
	out.rawKeys(layout)
	for i, f := range layout.Fields {
		raw.uint(out.names[i], c.Value.Field(f))
	}
	r.nested("raw", raw)
	return out.emit()
}

// rawKeys returns the JSON prefixes `,"name":` of the layout's fields,
// their C names in camelCase, computed once per listing.
func (o *output) rawKeys(layout profiles.CTEntryLayout) []string {
	if o.keys == nil {
		for _, f := range layout.Fields {
			n := camelCase(f.Name)
			o.names = append(o.names, n)
			o.keys = append(o.keys, `,"`+n+`":`)
		}
	}
	return o.keys
}

// camelCase turns a C field name (rx_bytes, src_sec_id) into the JSON
// casing of every egwct document, kubectl's: rxBytes, srcSecID.
func camelCase(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		switch p := parts[i]; p {
		case "id", "ip", "nat", "ct":
			parts[i] = strings.ToUpper(p)
		case "":
		default:
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}

// appendCTJSON writes one CT entry as a JSON object; the schema is the
// record's (docs/listing.md), the order of fields fixed.
func appendCTJSON(b []byte, mapName string, key []byte, c *ctmap.CT, src, dst netip.AddrPort, state profiles.State,
	remaining, idle time.Duration, rawKeys []string, layout profiles.CTEntryLayout) []byte {
	b = append(b, `{"map":"`...)
	b = append(b, mapName...)
	b = append(b, `","proto":"`...)
	b = append(b, ctmap.ProtoName(c.Key.NextHdr)...)
	b = append(b, `","srcIP":"`...)
	b = src.Addr().AppendTo(b)
	b = append(b, `","srcPort":`...)
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, `,"dstIP":"`...)
	b = dst.Addr().AppendTo(b)
	b = append(b, `","dstPort":`...)
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	b = append(b, `,"tupleFlags":"`...)
	b = append(b, c.Key.FlagsString()...)
	b = append(b, `","state":"`...)
	b = append(b, state.String()...)
	b = append(b, `","remainingSeconds":`...)
	b = printer.AppendSeconds(b, remaining)
	b = append(b, `,"idleSeconds":`...)
	b = printer.AppendSeconds(b, idle)
	b = append(b, `,"raw":{"keyHex":"`...)
	b = hex.AppendEncode(b, key)
	b = append(b, '"')
	for i, f := range layout.Fields {
		b = append(b, rawKeys[i]...)
		b = strconv.AppendUint(b, c.Value.Field(f), 10)
	}
	return append(b, "}}"...)
}

// flagNames lists the set ct_entry flag bits by their Cilium names.
func flagNames(layout profiles.CTEntryLayout, flags uint16) string {
	var names []string
	for _, b := range layout.FlagBits {
		if flags&b.Mask != 0 {
			names = append(names, b.Name)
		}
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

// tcpFlags names TCP flags as tcpdump does (F S R P . U E C).
func tcpFlags(f uint8) string {
	if f == 0 {
		return "-"
	}
	var b strings.Builder
	for i, c := range "FSRP.UEC" {
		if f&(1<<i) != 0 {
			b.WriteRune(c)
		}
	}
	return b.String()
}
