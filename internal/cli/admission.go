package cli

import (
	"github.com/spf13/cobra"

	"github.com/egwct/egwct/internal/admission"
	"github.com/egwct/egwct/pkg/profiles"
)

type admissionOptions struct {
	io            *IO
	CiliumVersion string
	Actions       string
}

func newAdmissionPolicyCmd(ios *IO) *cobra.Command {
	o := &admissionOptions{io: ios}
	cmd := &cobra.Command{
		Use:   "admission-policy",
		Short: "Print a ValidatingAdmissionPolicy that refuses bad timeout text at kubectl apply time",
		Long: `Print a ValidatingAdmissionPolicy and its binding
(admissionregistration.k8s.io/v1, Kubernetes 1.30 or later) whose CEL makes
the API server refuse a CiliumEgressGatewayPolicy whose timeout text egwct
validate reports as an error, wherever CEL can decide it: a line that is not
"key: value", an unknown key (with "did you mean" for known spellings), a
service timer, a key set twice, a value without a unit, not a duration, zero
or negative, or longer than the node default of the Cilium version; a text
over 64 KiB, spec.connection-timeouts that is not a text, and spec field and
annotation that disagree. Each message names the key and the rule
(docs/timeouts.md). No webhook or server runs.

The node defaults are those of --cilium-version (or $EGWCT_CILIUM_VERSION):
a node whose cilium-config raises a timeout accepts longer values than the
policy does. Regenerate the policy when you upgrade Cilium.

--validation-actions is the binding's validationActions: Deny (refuse),
Warn (accept, with a warning kubectl prints) or Audit (record in the audit
log); Audit may be added to either, e.g. Warn,Audit.

See docs/validate.md#admission-time-checks.`,
		Example: `  # Refuse bad policies on a cluster running Cilium 1.18.3
  egwct admission-policy --cilium-version 1.18.3 | kubectl apply -f -

  # Only warn while you clean up existing policies
  egwct admission-policy --cilium-version 1.18.3 --validation-actions Warn,Audit > egwct-admission.yaml`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runAdmissionPolicy(o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.CiliumVersion, "cilium-version", "", "Cilium version the cluster runs, e.g. 1.18.3 (required unless $EGWCT_CILIUM_VERSION is set)")
	f.StringVar(&o.Actions, "validation-actions", "Deny", "the binding's validationActions: Deny, Warn or Audit, comma-separated (Deny,Audit; Warn,Audit)")
	_ = cmd.RegisterFlagCompletionFunc("cilium-version", completeProfiles)
	_ = cmd.RegisterFlagCompletionFunc("validation-actions", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"Deny", "Warn", "Audit", "Deny,Audit", "Warn,Audit"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func runAdmissionPolicy(o *admissionOptions) error {
	from, version := ciliumVersion(o.io, o.CiliumVersion)
	if version == "" {
		return usageErrorf("--cilium-version is required (or $%s): the policy judges values against that version's node defaults", envCiliumVersion)
	}
	res, err := profiles.Resolve(version)
	if err != nil {
		return usageErrorf("%s: %v", from, err)
	}
	actions, err := admission.ParseActions(o.Actions)
	if err != nil {
		return usageErrorf("--validation-actions: %v", err)
	}
	out, err := admission.YAML(admission.Options{Resolution: res, Actions: actions, Version: currentBuild().Version})
	if err != nil {
		return err
	}
	_, err = o.io.Out.Write(out)
	return err
}
