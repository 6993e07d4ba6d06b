// Package enforce puts per-policy timeouts in force on one node, below the
// commands. It turns manifests and cluster objects into a policy set with
// findings as data (Resolver), previews a set against the node's maps
// without changing anything (MakePlan), puts a set in force and sweeps
// once (Apply), and keeps it in force (Agent), reacting to changes of its
// Source and sweeping on an injected clock.
//
// Nothing here prints or parses flags: commands in internal/cli build an
// Env from their flags, call this package and print what it returns. For
// exit codes, a *FindingsError is a refusal (exit 1); every other error
// is the environment (exit 3).
package enforce
