package ctmap

import "golang.org/x/sys/unix"

// errNoSpace is what a batch lookup returns when one hash bucket does not
// fit the buffer.
var errNoSpace error = unix.ENOSPC
