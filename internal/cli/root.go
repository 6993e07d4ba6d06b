// Package cli holds egwct's commands. Each verb lives in its own file with
// an options struct and a run function tests call directly; Main is the
// one place that turns errors into exit codes.
package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// Main runs egwct with args and returns the process exit code.
func Main(args []string, ios *IO) int {
	root := NewRootCmd(ios)
	root.SetArgs(args)
	code, err := exitCode(root.Execute())
	if err != nil {
		fmt.Fprintf(ios.ErrOut, "egwct: %v\n", err)
		if code == ExitUsage {
			fmt.Fprintln(ios.ErrOut, "Run 'egwct --help' for usage.")
		}
	}
	return code
}

// NewRootCmd builds the command tree.
func NewRootCmd(ios *IO) *cobra.Command {
	root := &cobra.Command{
		Use:   "egwct",
		Short: "Per-policy connection-tracking timeouts for Cilium's egress gateway",
		Long: `egwct gives each CiliumEgressGatewayPolicy its own connection-tracking (CT)
timeouts, so that idle connections leaving through an egress gateway give
back their SNAT ports long before the node-wide defaults would.

A policy carries its timeouts as the text of CFP-37454, at
spec.connection-timeouts or in the annotation egwct.io/connection-timeouts:

    bpfCtTimeoutRegularTcp: 5m
    bpfCtTimeoutRegularAny: 30s

Exit codes:
  0  success, no error findings
  1  error findings (or warnings with --strict), or egwct refused to act
  2  usage error: bad flags or arguments
  3  environment error: unreadable input, no privileges, kernel or maps
     missing, a Cilium map whose shape does not match the profile, or a
     node command (ct, nat, egress, lab, apply, reset, agent, top) run on
     a system other than Linux`,
		Example: `  # Check manifests against the Cilium version the cluster runs
  egwct validate --cilium-version 1.18.3 deploy/policies/

  # What the timeout text means for a Cilium version
  egwct profiles show 1.18`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(ios.In)
	root.SetOut(ios.Out)
	root.SetErr(ios.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{Code: ExitUsage, Err: err}
	})
	root.AddCommand(
		newValidateCmd(ios),
		newProfilesCmd(ios),
		newVersionCmd(ios),
		needsLinux(newCTCmd(ios)),
		needsLinux(newNATCmd(ios)),
		needsLinux(newEgressCmd(ios)),
		needsLinux(newLabCmd(ios)),
		needsLinux(newApplyCmd(ios)),
		needsLinux(newResetCmd(ios)),
		needsLinux(newAgentCmd(ios)),
		needsLinux(newTopCmd(ios)),
		newAdmissionPolicyCmd(ios),
	)
	guardPlatform(root, false)
	classifyRuns(root)
	return root
}
