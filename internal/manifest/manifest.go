// Package manifest finds and reads the manifest files egwct is given:
// files, folders (their *.yaml, *.yml and *.json files, hidden folders
// skipped) and standard input, each read up to a size limit.
package manifest

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MaxSize is the largest manifest egwct reads (32 MiB), so that memory
// stays bounded whatever is fed in: decoding YAML into nodes takes up to
// about 15 times the input (a 60 MB document peaks near 900 MB), and
// 32 MiB holds some 45,000 policies.
const MaxSize = 32 << 20

// ErrTooLarge is returned for an input larger than the limit it is read
// with.
var ErrTooLarge = errors.New("input too large")

// Stdin is the name of standard input in findings and logs.
const Stdin = "<stdin>"

// Input is one manifest: a file, standard input, or an object of a
// cluster given as its contents.
type Input struct {
	// Name is how findings name the input: its path, <stdin>, or
	// cegp/NAME for an object of a cluster.
	Name string
	// Path is the file to read; "" for standard input or Data.
	Path string
	// Data is the contents, when not read from a file.
	Data []byte
}

// Read returns the input's contents: Data, else the file, else stdin,
// read up to MaxSize bytes.
func (in Input) Read(stdin io.Reader) ([]byte, error) {
	if in.Data != nil {
		if len(in.Data) > MaxSize {
			return nil, ErrTooLarge
		}
		return in.Data, nil
	}
	if in.Path == "" && stdin == nil {
		return nil, errors.New("standard input is not available here")
	}
	return ReadLimited(in.Path, stdin, MaxSize)
}

// Collect expands paths into inputs in a stable order: a folder becomes
// its manifest files (walked in lexical order, hidden subfolders
// skipped), "-" standard input (once, however often it is given).
func Collect(paths []string) ([]Input, error) {
	var out []Input
	stdin := false
	for _, p := range paths {
		if p == "-" {
			if !stdin {
				out = append(out, Input{Name: Stdin})
			}
			stdin = true
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, Input{Name: p, Path: p})
			continue
		}
		// WalkDir does not follow a root that is a symbolic link (it
		// would visit the link alone and find no files); a trailing
		// separator makes it walk the folder the link names.
		root := p
		if lst, err := os.Lstat(p); err == nil && lst.Mode()&fs.ModeSymlink != 0 {
			root = p + string(filepath.Separator)
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != root && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if IsManifest(path) {
				out = append(out, Input{Name: path, Path: path})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// IsManifest reports whether a file in a folder is read as a manifest:
// by its extension, .yaml, .yml or .json.
func IsManifest(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// ReadLimited reads a file (or r when path is "") up to limit bytes; a
// larger input returns ErrTooLarge, the data read so far discarded.
func ReadLimited(path string, r io.Reader, limit int64) ([]byte, error) {
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, ErrTooLarge
	}
	return data, nil
}
