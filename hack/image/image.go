package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where the binary lives in the image, and how it runs.
const (
	binPath = "/usr/bin/egwct"
	// user is numeric so that no lookup is needed. The agent runs as root:
	// Kubernetes grants the capabilities it adds (BPF, PERFMON,
	// SYS_RESOURCE) to a non-root process only in its bounding set, and
	// allowPrivilegeEscalation: false (no_new_privs) disables file
	// capabilities, so a non-root agent would hold none of them. The
	// commands that need no kernel run as any user (nobody is 65534).
	user = "0:0"
)

// The base: scratch plus the few files a process expects. No CA
// certificates: in a pod the API server's CA comes with the service
// account token (/var/run/secrets/kubernetes.io/serviceaccount/ca.crt),
// and egwct talks to nothing else.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
	group  = "root:x:0:\nnogroup:x:65534:\n"
)

// config is what one run of the tool builds.
type config struct {
	Bin       string    // where make cross put <os>_<arch>/egwct
	Out       string    // the OCI layout to write (replaced)
	Platforms []string  // os/arch
	Version   string    // egwct's version: a label and the layout's tag
	Revision  string    // the commit
	Source    string    // the repository's URL
	Created   time.Time // every timestamp in the image
	Tag       string    // org.opencontainers.image.ref.name in the layout
	License   string    // the LICENSE file to ship beside the binary
}

// platformImage is one platform's image, as built.
type platformImage struct {
	Platform v1.Platform
	Image    v1.Image
}

// labels are the image's OCI labels, on each config and on the index.
func (c config) labels() map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "egwct",
		"org.opencontainers.image.description": "Per-policy conntrack timeouts for Cilium's egress gateway",
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.source":      c.Source,
		"org.opencontainers.image.version":     c.Version,
		"org.opencontainers.image.created":     c.Created.UTC().Format(time.RFC3339),
	}
	if c.Revision != "" {
		l["org.opencontainers.image.revision"] = c.Revision
	}
	return l
}

// buildIndex builds the image index of every platform.
func buildIndex(c config) (v1.ImageIndex, []platformImage, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var imgs []platformImage
	for _, p := range c.Platforms {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok || goos != "linux" {
			return nil, nil, fmt.Errorf("platform %q: only linux/<arch> images are built", p)
		}
		img, err := buildImage(c, goos, goarch)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p, err)
		}
		plat := v1.Platform{OS: goos, Architecture: goarch}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        plainImage{img},
			Descriptor: v1.Descriptor{Platform: &plat},
		})
		imgs = append(imgs, platformImage{Platform: plat, Image: img})
	}
	idx = mutate.Annotations(idx, c.labels()).(v1.ImageIndex)
	return idx, imgs, nil
}

// plainImage is an image whose descriptor in the index has no
// artifactType. go-containerregistry would set it to the config's media
// type; an image is not an artifact, docker buildx leaves it out, and
// skopeo 1.9 (Debian 12's) refuses to copy an index with it when told to
// keep the digests (--preserve-digests).
type plainImage struct{ v1.Image }

// ArtifactType is empty: the field is left out.
func (plainImage) ArtifactType() (string, error) { return "", nil }

// buildImage builds one platform's image: a single layer on nothing.
func buildImage(c config, goos, goarch string) (v1.Image, error) {
	bin, err := os.ReadFile(filepath.Join(c.Bin, goos+"_"+goarch, "egwct"))
	if err != nil {
		return nil, fmt.Errorf("%w (run make cross first)", err)
	}
	var license []byte
	if c.License != "" {
		if license, err = os.ReadFile(c.License); err != nil {
			return nil, err
		}
	}
	gz, err := layerTarGz(c.Created, bin, license)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: c.Created.UTC()}
	img, err := mutate.Append(
		mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON),
		mutate.Addendum{
			Layer:     layer,
			MediaType: types.OCILayer,
			History: v1.History{
				Created:   created,
				CreatedBy: fmt.Sprintf("make image: egwct %s for %s/%s", c.Version, goos, goarch),
			},
		})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = goos, goarch, created
	cf.Author = ""
	cf.Config = v1.Config{
		Entrypoint: []string{binPath},
		User:       user,
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/bin"},
		Labels:     c.labels(),
	}
	return mutate.ConfigFile(img, cf)
}

// entry is one file or folder of the layer.
type entry struct {
	name string
	mode int64
	data []byte // nil for a folder
}

// layerTarGz is the layer: every entry owned by root with the given time,
// in a fixed order, gzipped with no name or time in the header, so that
// the same binary makes the same bytes.
func layerTarGz(mtime time.Time, bin, license []byte) ([]byte, error) {
	entries := []entry{
		{"etc/", 0o755, nil},
		{"etc/group", 0o644, []byte(group)},
		{"etc/passwd", 0o644, []byte(passwd)},
		{"root/", 0o700, nil},
		{"tmp/", 0o1777, nil},
		{"usr/", 0o755, nil},
		{"usr/bin/", 0o755, nil},
		{"usr/bin/egwct", 0o755, bin},
	}
	if license != nil {
		entries = append(entries,
			entry{"usr/share/", 0o755, nil},
			entry{"usr/share/doc/", 0o755, nil},
			entry{"usr/share/doc/egwct/", 0o755, nil},
			entry{"usr/share/doc/egwct/LICENSE", 0o644, license})
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	mtime = mtime.UTC().Truncate(time.Second)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			ModTime: mtime,
			// USTAR: no PAX records, which could carry access and
			// change times.
			Format: tar.FormatUSTAR,
		}
		if e.data == nil {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeLayout writes idx as an OCI image layout at dir, replacing what is
// there: index.json names one manifest, the image index, tagged tag, as
// crane push, skopeo copy and oras copy expect.
func writeLayout(dir string, idx v1.ImageIndex, tag string) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	var opts []layout.Option
	if tag != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": tag,
		}))
	}
	if err := p.AppendIndex(idx, opts...); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}
