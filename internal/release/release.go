package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// config is one run of the release packer.
type config struct {
	Version   string
	Bin       string
	Dist      string
	Root      string
	URL       string
	Platforms []string
	Date      time.Time
	// Chart is the Helm chart's folder under Root, packed as Helm's chart
	// archive beside the binaries' (none when empty).
	Chart string
}

// ArchiveName is the contract name of a platform's archive.
func ArchiveName(goos, goarch string) string {
	return fmt.Sprintf("egwct_%s_%s.tar.gz", goos, goarch)
}

// binaryName is the binary's name inside the archive.
func binaryName(goos string) string {
	if goos == "windows" {
		return "egwct.exe"
	}
	return "egwct"
}

type archive struct {
	OS, Arch, Name, SHA256 string
}

func (c *config) run(w io.Writer) error {
	if err := os.MkdirAll(c.Dist, 0o755); err != nil {
		return err
	}
	extra, err := c.extraFiles()
	if err != nil {
		return err
	}
	var archives []archive
	for _, p := range c.Platforms {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok {
			return fmt.Errorf("platform %q is not os/arch", p)
		}
		bin := filepath.Join(c.Bin, goos+"_"+goarch, binaryName(goos))
		data, err := os.ReadFile(bin)
		if err != nil {
			return fmt.Errorf("%w (run make cross first)", err)
		}
		files := append([]file{{Name: binaryName(goos), Mode: 0o755, Data: data}}, extra...)
		tgz, err := pack(files, c.Date)
		if err != nil {
			return err
		}
		a := archive{OS: goos, Arch: goarch, Name: ArchiveName(goos, goarch)}
		sum := sha256.Sum256(tgz)
		a.SHA256 = hex.EncodeToString(sum[:])
		if err := os.WriteFile(filepath.Join(c.Dist, a.Name), tgz, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s  %s\n", a.SHA256, a.Name)
		archives = append(archives, a)
	}
	sort.Slice(archives, func(i, j int) bool { return archives[i].Name < archives[j].Name })
	summed := archives
	if c.Chart != "" {
		name, tgz, err := c.packChart(filepath.Join(c.Root, c.Chart))
		if err != nil {
			return fmt.Errorf("the chart: %w", err)
		}
		if err := os.WriteFile(filepath.Join(c.Dist, name), tgz, 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(tgz)
		a := archive{Name: name, SHA256: hex.EncodeToString(sum[:])}
		fmt.Fprintf(w, "%s  %s\n", a.SHA256, a.Name)
		summed = append([]archive{a}, archives...)
		sort.Slice(summed, func(i, j int) bool { return summed[i].Name < summed[j].Name })
	}
	var sums bytes.Buffer
	for _, a := range summed {
		fmt.Fprintf(&sums, "%s  %s\n", a.SHA256, a.Name)
	}
	if err := os.WriteFile(filepath.Join(c.Dist, "checksums.txt"), sums.Bytes(), 0o644); err != nil {
		return err
	}
	krew := krewManifest(c.Version, strings.ReplaceAll(c.URL, "{{version}}", c.Version), archives)
	return os.WriteFile(filepath.Join(c.Dist, "egwct.krew.yaml"), []byte(krew), 0o644)
}

// file is one file of an archive.
type file struct {
	Name string
	Mode int64
	Data []byte
}

// extraFiles are what every archive holds besides the binary.
func (c *config) extraFiles() ([]file, error) {
	var out []file
	for _, name := range []string{"LICENSE", "README.md"} {
		data, err := os.ReadFile(filepath.Join(c.Root, name))
		if err != nil {
			return nil, err
		}
		out = append(out, file{Name: name, Mode: 0o644, Data: data})
	}
	man, err := filepath.Glob(filepath.Join(c.Root, "docs", "man", "man1", "*.1"))
	if err != nil {
		return nil, err
	}
	sort.Strings(man)
	for _, m := range man {
		data, err := os.ReadFile(m)
		if err != nil {
			return nil, err
		}
		out = append(out, file{Name: "man/man1/" + filepath.Base(m), Mode: 0o644, Data: data})
	}
	return out, nil
}

// pack writes files as a reproducible gzipped tar.
func pack(files []file, date time.Time) ([]byte, error) {
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(gz)
	dirs := map[string]bool{}
	for _, f := range files {
		if d := filepath.ToSlash(filepath.Dir(f.Name)); d != "." {
			for _, p := range parents(d) {
				if !dirs[p] {
					dirs[p] = true
					if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: date, Format: tar.FormatPAX}); err != nil {
						return nil, err
					}
				}
			}
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: f.Name, Mode: f.Mode, Size: int64(len(f.Data)), ModTime: date, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// parents of "a/b/c" are "a", "a/b", "a/b/c".
func parents(d string) []string {
	parts := strings.Split(d, "/")
	out := make([]string, len(parts))
	for i := range parts {
		out[i] = strings.Join(parts[:i+1], "/")
	}
	return out
}
