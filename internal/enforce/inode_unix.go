//go:build !windows

package enforce

import "syscall"

// inode is the inode number of path, if it exists.
func inode(path string) (uint64, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, false
	}
	return uint64(st.Ino), true
}
