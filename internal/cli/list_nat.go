package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
)

func newNATCmd(ios *IO) *cobra.Command {
	cmd := &cobra.Command{Use: "nat", Short: "SNAT entries of Cilium's SNAT maps"}
	o := &listOptions{io: ios}
	list := &cobra.Command{
		Use:   "list",
		Short: "List SNAT entries: which pod flow holds which egress IP and port",
		Long: `List the entries of cilium_snat_v4_external (and _v6_), like
"cilium-dbg bpf nat list". Keys are in packet order. An egress entry
(SRC xlate) maps pod P:p → W:w to egress IP E and port p'; its reverse
entry (DST xlate) maps E:p' ← W:w back to the pod.`,
		Example: `  egwct nat list --cilium-version 1.18.3 --dst 93.184.216.34
  egwct nat list --cilium-version 1.18.3 -o json | jq -r '.items[] | select(.direction=="egress") | .toIP + ":" + (.toPort|tostring)'`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runNATList(o) },
	}
	o.registerOutput(list)
	o.registerFilters(list, false)
	cmd.AddCommand(list)
	return cmd
}

func runNATList(o *listOptions) error {
	_, maps, err := o.prepare(profiles.RoleSNAT)
	if err != nil {
		return err
	}
	defer closeAll(maps)
	if len(maps) == 0 {
		return envError(fmt.Errorf("no SNAT map under %s/%s: the node has no BPF NodePort/masquerading", o.node.BPFFS, ctmap.GlobalsDir))
	}
	out := newOutput(o.io.Out, o.printer, "NATEntryList",
		[]string{"PROTO", "DIRECTION", "SOURCE", "DESTINATION", "TRANSLATED", "NEEDS_CT"},
		[]string{"MAP", "CREATED"})
	var e ctmap.NAT
	for _, m := range maps {
		err := m.Walk(func(k, v []byte) error {
			var err error
			if e.Key, err = ctmap.DecodeTuple(k); err != nil {
				return err
			}
			if e.Value, err = ctmap.DecodeNATEntry(v); err != nil {
				return err
			}
			return o.natEntry(out, m, k, v, &e)
		})
		if err != nil {
			return envError(fmt.Errorf("%s: %w", m.Path, err))
		}
	}
	return printErr(out.close())
}

func (o *listOptions) natEntry(out *output, m *ctmap.Map, key, val []byte, e *ctmap.NAT) error {
	// Packet order: saddr → daddr. For the pod's side, --src matches the
	// pod (egress saddr, reverse to_daddr).
	src, dst := e.Key.SAddr, e.Key.DAddr
	pod := src
	if !e.Egress() {
		pod = e.Value.Addr()
	}
	if !matchPrefix(o.src, pod) || !(matchPrefix(o.dst, dst) || matchPrefix(o.dst, src)) ||
		(o.proto >= 0 && int(e.Key.NextHdr) != o.proto) {
		return nil
	}
	dir := "egress"
	if !e.Egress() {
		dir = "reverse"
	}
	srcPort, dstPort := e.Key.SPort, e.Key.DPort
	to := fmt.Sprintf("%s:%d", e.Value.Addr(), e.Value.Port())
	if out.table != nil {
		out.row([]string{
			ctmap.ProtoName(e.Key.NextHdr), dir,
			fmt.Sprintf("%s:%d", src, srcPort), fmt.Sprintf("%s:%d", dst, dstPort), to,
			strconv.FormatBool(e.Value.NeedsCT()), m.Spec.Name, strconv.FormatUint(e.Value.Created(), 10),
		}, o.printer.Wide())
		return nil
	}
	r := &out.rec
	r.reset()
	r.str("map", m.Spec.Name)
	r.str("proto", ctmap.ProtoName(e.Key.NextHdr))
	r.str("direction", dir)
	r.str("srcIP", src.String())
	r.uint("srcPort", uint64(srcPort))
	r.str("dstIP", dst.String())
	r.uint("dstPort", uint64(dstPort))
	r.str("toIP", e.Value.Addr().String())
	r.uint("toPort", uint64(e.Value.Port()))
	r.bool("needsCT", e.Value.NeedsCT())
	r.uint("created", e.Value.Created())
	raw := &out.sub
	raw.reset()
	raw.hex("keyHex", key)
	raw.hex("valueHex", val)
	r.nested("raw", raw)
	return out.emit()
}

func newEgressCmd(ios *IO) *cobra.Command {
	cmd := &cobra.Command{Use: "egress", Short: "Entries of Cilium's egress-gateway policy maps"}
	o := &listOptions{io: ios}
	list := &cobra.Command{
		Use:   "list",
		Short: "List egress-gateway policy entries: pod, destination CIDR, gateway and egress IP",
		Long: `List the entries of cilium_egress_gw_policy_v4 (and _v4_v2 on main, _v6 from
1.18), like "cilium-dbg bpf egress list". Gateway 0.0.0.0 means no gateway
node matched; 0.0.0.1 marks an excludedCIDR. The egress IP is only set on the
gateway node itself.`,
		Example: `  egwct egress list --cilium-version 1.18.3 --src 10.0.1.5`,
		Args:    cobra.NoArgs,
		RunE:    func(*cobra.Command, []string) error { return runEgressList(o) },
	}
	o.registerOutput(list)
	f := list.Flags()
	f.StringVar(&o.Src, "src", "", "only entries of this pod IP or CIDR")
	f.StringVar(&o.Dst, "dst", "", "only entries whose destination CIDR contains this IP (or overlaps this CIDR)")
	cmd.AddCommand(list)
	return cmd
}

func runEgressList(o *listOptions) error {
	_, maps, err := o.prepare(profiles.RoleEgressPolicy)
	if err != nil {
		return err
	}
	defer closeAll(maps)
	if len(maps) == 0 {
		return envError(fmt.Errorf("no egress-gateway policy map under %s/%s: is the egress gateway enabled?", o.node.BPFFS, ctmap.GlobalsDir))
	}
	out := newOutput(o.io.Out, o.printer, "EgressEntryList",
		[]string{"SOURCE", "DESTINATION", "GATEWAY", "EGRESS IP"},
		[]string{"MAP", "IFINDEX"})
	for _, m := range maps {
		err := m.Walk(func(k, v []byte) error {
			p, err := ctmap.DecodeEgressPolicy(k, v)
			if err != nil {
				return err
			}
			if !matchPrefix(o.src, p.Source) || (o.dst.IsValid() && !o.dst.Overlaps(p.Dest)) {
				return nil
			}
			gw := p.GatewayIP.String()
			switch {
			case p.Excluded():
				gw = "excluded"
			case p.GatewayIP == ctmap.GatewayNone:
				gw = "none"
			}
			if out.table != nil {
				out.row([]string{p.Source.String(), p.Dest.String(), gw, p.EgressIP.String(), m.Spec.Name, strconv.FormatUint(uint64(p.IfIndex), 10)}, o.printer.Wide())
				return nil
			}
			r := &out.rec
			r.reset()
			r.str("map", m.Spec.Name)
			r.str("srcIP", p.Source.String())
			r.str("dstCIDR", p.Dest.String())
			r.str("gatewayIP", p.GatewayIP.String())
			r.str("egressIP", p.EgressIP.String())
			r.bool("excluded", p.Excluded())
			r.uint("egressIfIndex", uint64(p.IfIndex))
			raw := &out.sub
			raw.reset()
			raw.hex("keyHex", k)
			raw.hex("valueHex", v)
			r.nested("raw", raw)
			return out.emit()
		})
		if err != nil {
			return envError(fmt.Errorf("%s: %w", m.Path, err))
		}
	}
	return printErr(out.close())
}
