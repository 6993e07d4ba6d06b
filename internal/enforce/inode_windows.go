package enforce

// inode: there are no pinned maps on Windows.
func inode(string) (uint64, bool) { return 0, false }
