package cli

import (
	"bytes"
	"io"
	"os"
)

// IO are the streams a command reads and writes, injected so that tests
// can run commands against buffers.
type IO struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// Terminal says whether Out is a terminal (for colour and layout).
	Terminal bool
	// Color enables ANSI colours on Out.
	Color bool
	// Env reads the environment ($EGWCT_CILIUM_VERSION,
	// $GITHUB_STEP_SUMMARY); nil reads the process's.
	Env func(string) string
}

// Getenv returns the environment variable's value.
func (s *IO) Getenv(key string) string {
	if s.Env == nil {
		return os.Getenv(key)
	}
	return s.Env(key)
}

// System returns the process's own streams.
func System() *IO {
	term := isTerminal(os.Stdout)
	return &IO{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		Terminal: term,
		Color:    term && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb",
	}
}

// TestIO returns streams backed by buffers: stdin reads from in; the
// environment is empty.
func TestIO(in string) (*IO, *bytes.Buffer, *bytes.Buffer) {
	out, errOut := &bytes.Buffer{}, &bytes.Buffer{}
	return &IO{In: bytes.NewBufferString(in), Out: out, ErrOut: errOut, Env: func(string) string { return "" }}, out, errOut
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
