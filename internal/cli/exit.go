package cli

import (
	"errors"
	"fmt"
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

// exitCode maps an error returned by a command to the process's exit code.
// Commands return *exitError for everything they detect; any other error
// comes from cobra's own parsing of the command line, a usage error.
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
