// Command egwct applies per-policy connection-tracking timeouts to Cilium's
// egress gateway. See docs/ and `egwct --help`.
package main

import (
	"os"

	"github.com/egwct/egwct/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.System()))
}
