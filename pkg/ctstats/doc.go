// Package ctstats holds statistics of Cilium's CT and SNAT maps against a
// policy set: one walk of the CT maps (flows per policy and state, idle
// times, what a sweep now would expire and the SNAT ports that frees, the
// flows of one policy) and one of the SNAT maps (ports in use per egress
// IP and destination, the policies holding them). egwct top, the dry run
// of apply and the agent's port-pressure metric all read them through this
// package, judging every entry with sweep.Matcher as the sweeper does.
package ctstats
