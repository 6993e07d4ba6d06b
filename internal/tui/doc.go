// Package tui is egwct top's terminal UI: a bubbletea model with three
// views (policies, flows of one policy, SNAT ports) over Snapshots that an
// injected Source provides. It imports no kernel package: tests feed it
// synthetic snapshots, key and window messages, and read View().
package tui
