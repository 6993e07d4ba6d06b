package manifest

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestCollect(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"real/a.yaml", "real/sub/b.yml", "real/.git/c.yaml", "real/notes.txt"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"link": "real", "link-to-link": "link", ".hidden-link": "real"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		path string
		want []string
	}{
		{"real", []string{"real/a.yaml", "real/sub/b.yml"}},
		{"real/", []string{"real/a.yaml", "real/sub/b.yml"}},
		// A folder named through a symbolic link is walked, not skipped.
		{"link", []string{"link/a.yaml", "link/sub/b.yml"}},
		{"link/", []string{"link/a.yaml", "link/sub/b.yml"}},
		{"link-to-link", []string{"link-to-link/a.yaml", "link-to-link/sub/b.yml"}},
		{".hidden-link", []string{".hidden-link/a.yaml", ".hidden-link/sub/b.yml"}},
		{"real/a.yaml", []string{"real/a.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			ins, err := Collect([]string{filepath.Join(dir, tt.path)})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, in := range ins {
				rel, _ := filepath.Rel(dir, in.Name)
				if in.Path != in.Name {
					t.Errorf("Path %q, Name %q", in.Path, in.Name)
				}
				got = append(got, filepath.ToSlash(rel))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Collect(%s) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}
