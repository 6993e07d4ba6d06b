package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/egwct/egwct/internal/printer"
)

// The release stamp, set at build time (make build, make release):
//
//	-ldflags "-X github.com/egwct/egwct/internal/cli.version=v1.2.3
//	  -X github.com/egwct/egwct/internal/cli.commit=<sha>
//	  -X github.com/egwct/egwct/internal/cli.date=2026-01-02T15:04:05Z"
//
// Without them, the commit and date come from the Go toolchain's VCS stamp
// and the version from the module (go install …@v1.2.3), else "dev".
var version, commit, date string

// buildInfo is the document of version -o json|yaml (docs/schemas/version.json).
type buildInfo struct {
	printer.Header
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	BuildDate string `json:"buildDate,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

func currentBuild() buildInfo {
	b := buildInfo{Header: printer.NewHeader("Version"), Version: version, Commit: commit, BuildDate: date,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && b.Commit == "":
				b.Commit = s.Value
			case s.Key == "vcs.time" && b.BuildDate == "":
				b.BuildDate = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	return b
}

// versionSpec are version's -o formats; text is the old name of table.
var versionSpec = printer.Spec{Default: printer.Table,
	Formats: []string{printer.Table, printer.JSON, printer.YAML, printer.JSONPath, printer.GoTemplate},
	Aliases: map[string]string{"text": printer.Table}, Headerless: true}

func newVersionCmd(ios *IO) *cobra.Command {
	pf := printer.NewFlags(versionSpec)
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print egwct's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			p, err := newPrinter(pf)
			if err != nil {
				return err
			}
			b := currentBuild()
			return printErr(p.Print(ios.Out, printer.View{Doc: b, Table: func(w io.Writer, _ printer.TableOptions) error {
				fmt.Fprintf(w, "egwct %s", b.Version)
				if b.Commit != "" {
					fmt.Fprintf(w, " (%.12s)", b.Commit)
				}
				fmt.Fprintf(w, " %s %s", b.GoVersion, b.Platform)
				if b.BuildDate != "" {
					fmt.Fprintf(w, " built %s", b.BuildDate)
				}
				fmt.Fprintln(w)
				return nil
			}}))
		},
	}
	pf.Register(cmd)
	return cmd
}
