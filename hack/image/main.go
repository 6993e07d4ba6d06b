// Command image builds egwct's multi-arch OCI image from the static
// binaries of make cross, without a Docker daemon and without pulling a
// base image (make image, through hack/image.sh):
//
//	dist/image/   an OCI image layout: index.json names one image index
//	              (linux/amd64, linux/arm64), tagged with the version
//
// Each platform's image is one layer on nothing: /usr/bin/egwct (the
// entrypoint), /etc/passwd and /etc/group (root and nobody), /root, /tmp
// and the LICENSE, user 0:0 (see user in image.go for why). Every
// timestamp is the commit's date (or SOURCE_DATE_EPOCH), so the same
// commit builds the same digest. It prints the index's digest on stdout.
//
// A tool module of its own, so that egwct's go.mod never requires
// go-containerregistry.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.Bin, "bin", "bin", "where make cross put <os>_<arch>/egwct")
	fs.StringVar(&c.Out, "out", "dist/image", "the OCI image layout to write (replaced)")
	platforms := fs.String("platforms", "linux/amd64 linux/arm64", "the platforms, space-separated")
	fs.StringVar(&c.Version, "version", "", "egwct's version (required): a label, and the tag in the layout")
	fs.StringVar(&c.Revision, "revision", "", "the commit the binaries were built from")
	fs.StringVar(&c.Source, "source", "https://github.com/egwct/egwct", "the source repository's URL")
	created := fs.String("created", "", "every timestamp in the image, RFC 3339 (default: $SOURCE_DATE_EPOCH)")
	fs.StringVar(&c.Tag, "tag", "", "the tag in the layout (org.opencontainers.image.ref.name; default: the version)")
	fs.StringVar(&c.License, "license", "LICENSE", "the license file shipped in the image (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Version == "" {
		return fmt.Errorf("-version is required")
	}
	if c.Tag == "" {
		c.Tag = c.Version
	}
	c.Platforms = strings.Fields(*platforms)
	var err error
	if c.Created, err = parseCreated(*created, os.Getenv("SOURCE_DATE_EPOCH")); err != nil {
		return err
	}
	idx, imgs, err := buildIndex(c)
	if err != nil {
		return err
	}
	if err := writeLayout(c.Out, idx, c.Tag); err != nil {
		return err
	}
	for _, pi := range imgs {
		d, err := pi.Image.Digest()
		if err != nil {
			return err
		}
		size, err := imageSize(pi)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s/%s\t%s\t%.1f MiB compressed\n", pi.Platform.OS, pi.Platform.Architecture, d, float64(size)/(1<<20))
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s (tag %s)\n", c.Out, c.Tag)
	fmt.Println(d)
	return nil
}

// parseCreated is -created, else SOURCE_DATE_EPOCH; one is needed, as
// the clock would make every build differ.
func parseCreated(created, epoch string) (time.Time, error) {
	if created != "" {
		t, err := time.Parse(time.RFC3339, created)
		if err != nil {
			return time.Time{}, fmt.Errorf("-created: %w", err)
		}
		return t.UTC(), nil
	}
	if epoch != "" {
		s, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		return time.Unix(s, 0).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("no date for the image: pass -created or set SOURCE_DATE_EPOCH (make image passes the commit's date)")
}

// imageSize is the compressed size of the manifest, config and layers.
func imageSize(pi platformImage) (int64, error) {
	m, err := pi.Image.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := pi.Image.RawManifest()
	if err != nil {
		return 0, err
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}
