//go:build !linux

package ctmap

import "errors"

// errNoSpace is never returned where there are no BPF maps.
var errNoSpace = errors.New("no space")
