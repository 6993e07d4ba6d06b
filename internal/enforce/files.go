package enforce

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"

	"github.com/egwct/egwct/internal/manifest"
)

// FileSource reads policies and endpoints from manifest files and
// folders, and watches them (inotify): a write, a new file, a removal or
// a ConfigMap volume's atomic swap of its ..data link fires Changed.
type FileSource struct {
	paths   []string
	changed chan struct{}
	w       *fsnotify.Watcher

	mu      sync.Mutex
	watched map[string]bool
}

// NewFileSource watches paths until ctx ends. Standard input cannot be
// watched; give files or folders.
func NewFileSource(ctx context.Context, paths []string) (*FileSource, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	s := &FileSource{paths: paths, changed: make(chan struct{}, 1), w: w, watched: map[string]bool{}}
	if err := s.watch(); err != nil {
		w.Close()
		return nil, err
	}
	go s.run(ctx)
	return s, nil
}

// watch adds a watch on every folder the paths name or hold, and on the
// folder of every file.
func (s *FileSource) watch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	add := func(dir string) error {
		if s.watched[dir] {
			return nil
		}
		if err := s.w.Add(dir); err != nil {
			return err
		}
		s.watched[dir] = true
		return nil
	}
	for _, p := range s.paths {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !st.IsDir() {
			if err := add(filepath.Dir(p)); err != nil {
				return err
			}
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			if path != p && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return add(path)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *FileSource) run(ctx context.Context) {
	defer s.w.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-s.w.Events:
			if !ok {
				return
			}
			s.notify()
		case _, ok := <-s.w.Errors:
			if !ok {
				return
			}
			// An overflow loses events: read everything again.
			s.notify()
		}
	}
}

func (s *FileSource) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Changed fires after the files changed.
func (s *FileSource) Changed() <-chan struct{} { return s.changed }

// Objects reads every file again (and watches folders created since).
func (s *FileSource) Objects() (Objects, error) {
	if err := s.watch(); err != nil {
		return Objects{}, err
	}
	inputs, err := manifest.Collect(s.paths)
	if err != nil {
		return Objects{}, err
	}
	return Parse(inputs, nil)
}

// Sources combines sources: their objects are added up, and a change of
// any is a change.
func Sources(ctx context.Context, srcs ...Source) Source {
	if len(srcs) == 1 {
		return srcs[0]
	}
	m := &multiSource{srcs: srcs, changed: make(chan struct{}, 1)}
	for _, src := range srcs {
		go func(c <-chan struct{}) {
			for {
				select {
				case <-ctx.Done():
					return
				case <-c:
					select {
					case m.changed <- struct{}{}:
					default:
					}
				}
			}
		}(src.Changed())
	}
	return m
}

type multiSource struct {
	srcs    []Source
	changed chan struct{}
}

func (m *multiSource) Changed() <-chan struct{} { return m.changed }

func (m *multiSource) Objects() (Objects, error) {
	var out Objects
	for _, s := range m.srcs {
		o, err := s.Objects()
		if err != nil {
			return Objects{}, err
		}
		out.Add(o)
	}
	return out, nil
}
