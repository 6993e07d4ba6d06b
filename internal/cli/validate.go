package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/egwct/egwct/internal/cluster"
	"github.com/egwct/egwct/internal/manifest"
	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/pkg/nodeconfig"
	"github.com/egwct/egwct/pkg/policy"
	"github.com/egwct/egwct/pkg/profiles"
	"github.com/egwct/egwct/pkg/validate"
)

type validateOptions struct {
	io            *IO
	Paths         []string
	CiliumVersion string
	NodeConfig    string
	print         printer.Flags
	Strict        bool
	Verbose       bool
	cluster       clusterOptions
}

func newValidateCmd(ios *IO) *cobra.Command {
	o := &validateOptions{io: ios}
	cmd := &cobra.Command{
		Use:   "validate [PATH|-]...",
		Short: "Check the timeout text of CiliumEgressGatewayPolicy manifests",
		Long: `Check the per-policy timeout text of CiliumEgressGatewayPolicy manifests
against the parameter set of a Cilium version, without a kernel or a cluster.

PATH is a file, a folder (searched recursively for *.yaml, *.yml and *.json)
or - for standard input. Files may hold several YAML documents and
kind: List objects; objects of other kinds are skipped (listed with -v).

The text is read from spec.connection-timeouts or from the annotation
egwct.io/connection-timeouts. Each finding has a severity, a stable rule id
and the file, line and column of the offending key:

  errors    yaml-syntax, line-syntax, not-text, text-too-large, unknown-key,
            duplicate-key, service-timer, bare-number, bad-duration,
            non-positive, above-node-timeout, source-conflict, file-too-large
  warnings  below-precision, jiffy-rounding, syn-above-established,
            below-rfc5382, unverified-version, api-version, node-config
  info      profile, node-settings, version-quirk, no-effect

Node timeouts are the profile's defaults unless --node-config gives the
node's agent-runtime-config.json or a cilium-config ConfigMap manifest.

--from-cluster checks the cluster's policies too (read-only), named
cegp/NAME; without --cilium-version the version is the cilium DaemonSet's
image tag and the node timeouts come from cilium-config, in
--cilium-namespace (see docs/kubernetes.md).

Output formats: table (for people and CI logs; "text" is an alias), json and
yaml (a ValidateReport, docs/schemas/validate-report.json), jsonpath=… and
go-template=… over that document, github (GitHub Actions annotations) and
sarif (SARIF 2.1.0 for code scanning; rule ids link to docs/timeouts.md).

In CI: $EGWCT_CILIUM_VERSION stands for --cilium-version when the flag is
not given. When $GITHUB_STEP_SUMMARY names a file (GitHub Actions), a
Markdown summary of the findings is appended to it; with -o github it says
when there are more findings than GitHub shows as annotations (10 of each
kind per step, 50 per job).

Exit codes:
  0  no error findings
  1  error findings, or warnings with --strict
  2  usage error (bad flag, unknown Cilium version, no input given)
  3  environment error (unreadable input file or node configuration,
     cluster unreachable, a missing permission)`,
		Example: `  # Validate the examples against Cilium 1.18.3
  egwct validate --cilium-version 1.18.3 examples/

  # From a pipe, against a node's real settings
  kubectl get cegp -o yaml | egwct validate --cilium-version 1.17.8 \
      --node-config /var/run/cilium/state/agent-runtime-config.json -

  # The policies in the cluster, version detected
  egwct validate --from-cluster --context prod

  # In GitHub Actions: annotations on the pull request, warnings fail too
  egwct validate --cilium-version 1.18 -o github --strict policies/

  # For GitHub code scanning (upload with github/codeql-action/upload-sarif)
  EGWCT_CILIUM_VERSION=1.18.3 egwct validate -o sarif policies/ > egwct.sarif`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 && !o.cluster.From {
				return usageErrorf("no input: give manifest files, folders, - for standard input, or --from-cluster")
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			o.Paths = args
			return runValidate(o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.CiliumVersion, "cilium-version", "", "Cilium version the policies are for, e.g. 1.18.3, v1.17.0-rc.1, main (required without --from-cluster)")
	f.StringVar(&o.NodeConfig, "node-config", "", "the node's agent-runtime-config.json or a cilium-config ConfigMap manifest")
	o.print = *printer.NewFlags(validateSpec)
	o.print.Register(cmd)
	f.BoolVar(&o.Strict, "strict", false, "fail (exit 1) on warnings too")
	f.BoolVarP(&o.Verbose, "verbose", "v", false, "also list the objects that were skipped")
	o.cluster.register(cmd, "the CiliumEgressGatewayPolicies")
	_ = cmd.RegisterFlagCompletionFunc("cilium-version", completeProfiles)
	return cmd
}

// envCiliumVersion stands for --cilium-version when the flag is not
// given, so that a CI pipeline sets the version once for every step.
const envCiliumVersion = "EGWCT_CILIUM_VERSION"

// ciliumVersion returns the version from the flag, else from
// $EGWCT_CILIUM_VERSION, and where it came from; "" when neither is set.
func ciliumVersion(ios *IO, flag string) (from, version string) {
	if flag != "" {
		return "--cilium-version", flag
	}
	if v := strings.TrimSpace(ios.Getenv(envCiliumVersion)); v != "" {
		return "$" + envCiliumVersion, v
	}
	return "", ""
}

func completeProfiles(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return profiles.Names(), cobra.ShellCompDirectiveNoFileComp
}

func runValidate(o *validateOptions) error {
	p, err := newPrinter(&o.print)
	if err != nil {
		return err
	}
	versionFrom, version := ciliumVersion(o.io, o.CiliumVersion)
	var ci *cluster.Cilium
	if version == "" {
		if !o.cluster.From {
			return usageErrorf("--cilium-version is required: egwct detects the version only with --from-cluster (e.g. --cilium-version 1.18.3, or $%s)", envCiliumVersion)
		}
		var err error
		if ci, err = o.cluster.cilium(context.Background()); err != nil {
			return err
		}
		versionFrom, version = ci.VersionFrom, ci.Version
	}
	res, err := profiles.Resolve(version)
	if err != nil {
		if ci != nil {
			return envError(fmt.Errorf("detected Cilium %s (%s): %w; give --cilium-version", version, versionFrom, err))
		}
		return usageErrorf("%s: %v", versionFrom, err)
	}
	var node *nodeconfig.Config
	if o.NodeConfig == "" && ci != nil && ci.Config != nil {
		if node, err = nodeconfig.Parse(ci.ConfigFrom, ci.Config); err != nil {
			return envError(err)
		}
	}
	if o.NodeConfig != "" {
		data, err := manifest.ReadLimited(o.NodeConfig, nil, nodeconfig.MaxSize)
		if err != nil {
			return envError(fmt.Errorf("--node-config: %w", err))
		}
		if node, err = nodeconfig.Parse(o.NodeConfig, data); err != nil {
			return envError(fmt.Errorf("--node-config: %w", err))
		}
	}
	inputs, err := manifest.Collect(o.Paths)
	if err != nil {
		return envError(err)
	}
	if o.cluster.From {
		objs, err := o.cluster.inputs(context.Background())
		if err != nil {
			return err
		}
		inputs = append(inputs, objs...)
	} else if len(inputs) == 0 {
		fmt.Fprintf(o.io.ErrOut, "egwct: warning: no *.yaml, *.yml or *.json files in %s\n", strings.Join(o.Paths, ", "))
	}

	v := validate.New(validate.Options{Resolution: res, VersionFrom: versionFrom, Node: node})
	rep := &report{profile: res.Profile.Name, version: res.Version.String()}
	rep.add(nil, v.Preamble()...)
	for _, in := range inputs {
		if err := rep.file(o, v, in); err != nil {
			return envError(err)
		}
	}
	if err := printReport(o.io, p, rep); err != nil {
		if _, ok := err.(*exitError); ok {
			return err // a template that fails on the report
		}
		return envError(err)
	}
	if path := o.io.Getenv("GITHUB_STEP_SUMMARY"); path != "" {
		if err := writeStepSummary(path, rep, p.Format); err != nil {
			return envError(err)
		}
	}
	if rep.errors > 0 || (o.Strict && rep.warnings > 0) {
		return silentExit(ExitFindings)
	}
	return nil
}

// report gathers the findings of a run, each with the source line it
// points at (for the text output).
type report struct {
	profile, version          string
	files, policies           int
	errors, warnings, notices int
	items                     []item
}

type item struct {
	validate.Finding
	source string // the line of the file the finding points at, if any
}

func (r *report) add(src *policy.Source, fs ...validate.Finding) {
	for _, f := range fs {
		it := item{Finding: f}
		if src != nil && f.Line > 0 && f.File == src.File {
			it.source, _ = src.Line(f.Line)
		}
		switch f.Severity {
		case validate.Error:
			r.errors++
		case validate.Warning:
			r.warnings++
		default:
			r.notices++
		}
		r.items = append(r.items, it)
	}
}

// file validates one input and adds its findings, sorted by position.
func (r *report) file(o *validateOptions, v *validate.Validator, in manifest.Input) error {
	r.files++
	data, err := in.Read(o.io.In)
	if errors.Is(err, manifest.ErrTooLarge) {
		r.add(nil, validate.FileTooLarge(in.Name, manifest.MaxSize))
		return nil
	}
	if err != nil {
		return err
	}
	src := policy.NewSource(in.Name, data)
	var fs []validate.Finding
	err = src.Each(func(p *policy.Policy) {
		r.policies++
		fs = append(fs, v.Policy(p).Findings...)
	}, func(s policy.Skipped) {
		if o.Verbose {
			fmt.Fprintf(o.io.ErrOut, "skipped %s: kind %s\n", s.Pos, clean(orNone(s.Kind)))
		}
	})
	var se *policy.SyntaxError
	if errors.As(err, &se) {
		fs = append(fs, validate.SyntaxFinding(se))
	}
	validate.SortFindings(fs)
	r.add(src, fs...)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
