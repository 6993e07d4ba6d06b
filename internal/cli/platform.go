package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// nodeOS says whether this build can run the commands that read or change
// a node's BPF maps. Those need Linux; validate, profiles, version and
// completion run everywhere (a laptop, CI on macOS or Windows).
var nodeOS = runtime.GOOS == "linux"

// nodeCommand is the annotation that marks a command needing Linux.
const nodeCommand = "egwct.io/needs-linux"

// needsLinux marks cmd (and so its subcommands) as a node command.
func needsLinux(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[nodeCommand] = "true"
	return cmd
}

// guardPlatform replaces the run function of every node command with one
// that exits 3 saying the command needs Linux, when this build is not for
// Linux. Flags still parse (a usage error stays a usage error) and help
// still prints.
func guardPlatform(cmd *cobra.Command, inherited bool) {
	node := inherited || cmd.Annotations[nodeCommand] == "true"
	if node && !nodeOS && (cmd.RunE != nil || cmd.Run != nil) {
		path := cmd.CommandPath()
		cmd.PreRunE, cmd.Run = nil, nil
		cmd.RunE = func(*cobra.Command, []string) error {
			return envError(fmt.Errorf("%s reads and changes a node's BPF maps and needs Linux; on %s, egwct runs validate, profiles, version and completion", path, runtime.GOOS))
		}
	}
	for _, sub := range cmd.Commands() {
		guardPlatform(sub, node)
	}
}
