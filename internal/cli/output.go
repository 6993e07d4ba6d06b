package cli

import (
	"github.com/egwct/egwct/internal/printer"
)

// newPrinter returns the printer of a command's -o flags; a bad value is
// a usage error (exit 2).
func newPrinter(f *printer.Flags) (*printer.Printer, error) {
	p, err := f.Printer()
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	return p, nil
}

// printErr makes a template that fails on the document a usage error.
func printErr(err error) error {
	if printer.IsUsage(err) {
		return usageErrorf("%v", err)
	}
	return err
}

// clean makes text from input safe for a terminal (printer.Clean).
func clean(s string) string { return printer.Clean(s) }

func isControl(r rune) bool { return printer.IsControl(r) }
