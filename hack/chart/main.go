// Command chart renders egwct's Helm chart with the Helm Go library, as
// `helm template` would, so that make deploy and the tests need no helm
// binary and egwct's own module never links Helm.
//
//	chart [-n NAMESPACE] [--name RELEASE] [-f VALUES.yaml]... [--set KEY=VALUE]... [--api-versions GROUP/VERSION]... [--kube-version VERSION] CHART_DIR
//	chart --lint [-n NAMESPACE] [-f VALUES.yaml]... [--set KEY=VALUE]... CHART_DIR
//	chart --notes [the flags of a rendering] CHART_DIR
//
// It prints the manifests in Helm's install order, each after a
// "# Source:" line, and fails when a value does not match the chart's
// values.schema.json. With --lint it runs `helm lint`'s checks instead
// (Chart.yaml, values, templates, dependencies), prints every message,
// and fails on a warning or an error. With --notes it prints the
// chart's NOTES.txt as helm install would show it.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"runtime/debug"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
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
	kubeVersion := fs.String("kube-version", "", "the Kubernetes version the templates see, as helm template's (default: 1.<minor of the client-go linked>, as hack/helm.sh stamps the helm CLI)")
	lintOnly := fs.Bool("lint", false, "run helm lint's checks instead of rendering")
	notes := fs.Bool("notes", false, "print NOTES.txt instead of the manifests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one chart folder, got %d arguments", fs.NArg())
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
	if *lintOnly {
		return lintChart(w, fs.Arg(0), vals, *ns)
	}
	ch, err := loader.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.APIVersions = append(caps.APIVersions, apis...)
	kv, err := kubeVersionOf(*kubeVersion)
	if err != nil {
		return err
	}
	caps.KubeVersion = *kv
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: *name, Namespace: *ns, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		return err
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return err
	}
	if *notes {
		for k, v := range out {
			if path.Base(k) == "NOTES.txt" {
				fmt.Fprintln(w, strings.TrimSpace(v))
			}
		}
		return nil
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

// kubeVersionOf parses v, or, when it is empty, gives the Kubernetes
// version of the client-go this renderer links (client-go v0.N is
// Kubernetes 1.N): what helm template assumes without a cluster once
// stamped as hack/helm.sh stamps it, where the library alone says 1.20.
func kubeVersionOf(v string) (*chartutil.KubeVersion, error) {
	if v != "" {
		return chartutil.ParseKubeVersion(v)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "k8s.io/client-go" {
				if minor, ok := strings.CutPrefix(d.Version, "v0."); ok {
					minor, _, _ = strings.Cut(minor, ".")
					return chartutil.ParseKubeVersion("v1." + minor + ".0")
				}
			}
		}
	}
	return nil, fmt.Errorf("no k8s.io/client-go in the renderer's build information: give --kube-version")
}

// lintChart runs helm lint's checks on the chart folder dir with vals.
func lintChart(w io.Writer, dir string, vals map[string]any, ns string) error {
	l := lint.All(dir, vals, ns, false)
	for _, m := range l.Messages {
		fmt.Fprintln(w, m.Error())
	}
	if l.HighestSeverity >= support.WarningSev {
		return fmt.Errorf("lint: %d messages, the worst a warning or an error", len(l.Messages))
	}
	fmt.Fprintf(w, "%s: linted, no warnings or errors\n", dir)
	return nil
}
