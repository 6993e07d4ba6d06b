// Command chart renders egwct's Helm chart with the Helm Go library, as
// `helm template` would, so that make deploy and the tests need no helm
// binary and egwct's own module never links Helm.
//
//	chart [-n NAMESPACE] [--name RELEASE] [-f VALUES.yaml]... [--set KEY=VALUE]... [--api-versions GROUP/VERSION]... CHART_DIR
//
// It prints the manifests in Helm's install order, each after a
// "# Source:" line, and fails when a value does not match the chart's
// values.schema.json.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/strvals"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
}

func run(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("chart", flag.ContinueOnError)
	ns := fs.String("n", "default", "the release's namespace")
	name := fs.String("name", "egwct", "the release's name")
	var files, sets, apis list
	fs.Var(&files, "f", "a values file (repeatable)")
	fs.Var(&sets, "set", "KEY=VALUE, as helm --set (repeatable)")
	fs.Var(&apis, "api-versions", "an API version the cluster serves besides the built-in ones (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one chart folder, got %d arguments", fs.NArg())
	}
	ch, err := loader.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	vals := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			return err
		}
		vals = chartutil.CoalesceTables(v, vals)
	}
	for _, s := range sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			return fmt.Errorf("--set %s: %w", s, err)
		}
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.APIVersions = append(caps.APIVersions, apis...)
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: *name, Namespace: *ns, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		return err
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return err
	}
	for k := range out {
		if strings.HasSuffix(k, "NOTES.txt") || path.Base(k)[0] == '_' {
			delete(out, k)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(out, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return err
	}
	if len(hooks) > 0 {
		return fmt.Errorf("the chart has hooks, which this renderer does not print")
	}
	for _, m := range manifests {
		fmt.Fprintf(w, "---\n# Source: %s\n%s\n", m.Name, strings.TrimSpace(m.Content))
	}
	return nil
}
