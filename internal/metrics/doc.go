// Package metrics is what `egwct agent` serves over HTTP: Prometheus
// metrics through prometheus/client_golang with a registry of its own, and
// the liveness (/healthz) and readiness (/readyz) endpoints of the
// DaemonSet's probes.
//
// The agent reports events (a sweep done or failed, a new policy set, a
// reload refused, the maps re-opened, the cluster reachable or not, the
// ports in use) and the package turns them into series. What describes the
// last sweep (CT entries and idle times per policy and state) is emitted
// from the last recorded result at each scrape, so the series of a policy
// that is gone disappear with the next sweep; counters are kept per policy
// name and dropped when a new policy set no longer holds the name.
//
// Label values are escaped by the library; a value that is not valid UTF-8
// has each invalid byte sequence replaced by U+FFFD (see LabelValue).
package metrics
