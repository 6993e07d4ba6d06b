// Command release packs the binaries of make cross into the release
// archives, their checksums and a krew plugin manifest (make release):
//
//	dist/egwct_<os>_<arch>.tar.gz   the binary (egwct, egwct.exe on Windows),
//	                                LICENSE, README.md and the man pages
//	dist/egwct-<version>.tgz        the Helm chart (deploy/helm/egwct), its
//	                                version and appVersion the release's
//	dist/checksums.txt              sha256sum's format, one line per archive
//	dist/egwct.krew.yaml            kubectl egwct, from the archives' sums
//
// The archive names are a contract: installers and CI actions download
// them by name. The archives are reproducible: every file has the commit's
// date, owner root and a fixed mode, in a fixed order, and gzip's header
// carries no name or time.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	var c config
	flag.StringVar(&c.Version, "version", "", "the release's version, e.g. v0.1.0 (required)")
	flag.StringVar(&c.Bin, "bin", "bin", "where make cross put <os>_<arch>/egwct[.exe]")
	flag.StringVar(&c.Dist, "dist", "dist", "where to write the archives")
	flag.StringVar(&c.Root, "root", ".", "the repository's root (LICENSE, README.md, docs/man)")
	flag.StringVar(&c.URL, "url", "https://github.com/egwct/egwct/releases/download/{{version}}", "where the archives are downloaded from; {{version}} is replaced")
	flag.StringVar(&c.Chart, "chart", "deploy/helm/egwct", "the Helm chart's folder under -root, packed as dist/egwct-<version>.tgz; empty: none")
	platforms := flag.String("platforms", "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64", "the platforms, space-separated")
	date := flag.String("date", "", "the files' time, RFC 3339 (default: now)")
	flag.Parse()
	c.Platforms = strings.Fields(*platforms)
	c.Date = time.Now().UTC().Truncate(time.Second)
	if *date != "" {
		t, err := time.Parse(time.RFC3339, *date)
		if err != nil {
			fail(fmt.Errorf("-date: %w", err))
		}
		c.Date = t
	}
	if c.Version == "" {
		fail(fmt.Errorf("-version is required"))
	}
	if err := c.run(os.Stdout); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "release:", err)
	os.Exit(1)
}
