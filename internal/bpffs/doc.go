// Package bpffs mounts and recognises BPF filesystems. BPF filesystems
// exist only on Linux; elsewhere every function returns ErrUnsupported.
package bpffs
