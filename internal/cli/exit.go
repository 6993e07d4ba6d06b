package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/egwct/egwct/internal/enforce"
)

// Exit codes, the contract documented in `egwct --help` and docs/.
const (
	ExitOK = 0
	// ExitFindings: validation found errors (or warnings with --strict),
	// or egwct refused to act.
	ExitFindings = 1
	// ExitUsage: bad flags or arguments.
	ExitUsage = 2
	// ExitEnv: the environment is not usable: unreadable input, missing
	// privileges, a kernel without a needed feature, maps or cluster missing.
	ExitEnv = 3
)

// exitError carries an exit code with an error. A nil Err exits silently
// (the command has already said everything).
type exitError struct {
	Code int
	Err  error
}

func (e *exitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *exitError) Unwrap() error { return e.Err }

func usageErrorf(format string, a ...any) error {
	return &exitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

func envError(err error) error { return &exitError{Code: ExitEnv, Err: err} }

// silentExit ends the command with a code and no further message.
func silentExit(code int) error { return &exitError{Code: code} }

// classify is the one classification of a command's errors: a usage
// error or an explicit code as the command said, a refusal for findings,
// and the environment for everything else.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	var fe *enforce.FindingsError
	if errors.As(err, &fe) {
		return &exitError{Code: ExitFindings, Err: err}
	}
	return &exitError{Code: ExitEnv, Err: err}
}

// classifyRuns makes every command of the tree classify the errors its
// run function returns; what reaches Main unclassified then comes from
// cobra's own parsing of the command line (unknown commands, flags and
// arguments): a usage error.
func classifyRuns(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error { return classify(run(c, args)) }
	}
	if pre := cmd.PreRunE; pre != nil {
		cmd.PreRunE = func(c *cobra.Command, args []string) error { return classify(pre(c, args)) }
	}
	for _, sub := range cmd.Commands() {
		classifyRuns(sub)
	}
}

// exitCode maps an error returned by the command tree to the process's
// exit code.
func exitCode(err error) (int, error) {
	if err == nil {
		return ExitOK, nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.Code, ee.Err
	}
	return ExitUsage, err
}
