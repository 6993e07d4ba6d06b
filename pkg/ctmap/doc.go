// Package ctmap reads and writes Cilium's connection-tracking, SNAT and
// egress-gateway policy maps byte for byte.
//
// The codecs (Tuple, CTEntry, NATEntry, EgressKey/EgressValue) are pure:
// they turn the maps' fixed binary layouts (cilium-datapath.md §2, §3, §6,
// §8) into values that speak the user's language (flow P:p → W:w, CT state,
// closing bits, lifetime) while keeping every raw byte, so that encoding a
// decoded value gives back the same bytes.
//
// Map access (Open, Map.Walk) opens pinned maps under <bpffs>/tc/globals and
// refuses a map whose name, type, key size or value size does not match the
// profile in use.
package ctmap
