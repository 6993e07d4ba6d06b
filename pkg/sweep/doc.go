// Package sweep loads and drives egwct's bundled BPF sweeper and keeps
// egwct's own pinned state.
//
// The state lives under <bpffs>/egwct/<schema version> (never inside Cilium's
// tc/globals): the policy trie behind a one-slot array of maps, so that a
// new policy set replaces the old one with a single atomic update; the
// per-sweep statistics the BPF program writes; running totals; and the
// names of the policies for display. It survives egwct exiting.
//
// A sweep runs the BPF map-element iterator over each of Cilium's IPv4 CT
// maps. The program judges every entry against its policy (see
// bpf/sweep.bpf.c); in reclaim mode userspace then deletes each expired
// entry and its two SNAT entries, unless the datapath refreshed the entry
// after it was judged; in mark mode the program only rewrites lifetime.
package sweep
