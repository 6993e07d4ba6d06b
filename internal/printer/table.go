package printer

import (
	"io"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
)

// NewTable returns a borderless, kubectl-like table: columns separated by
// spaces, a header line unless noHeaders.
func NewTable(w io.Writer, noHeaders bool, header ...any) *tablewriter.Table {
	t := tablewriter.NewTable(w, tablewriter.WithRendition(plainRendition), tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithRowAutoWrap(tw.WrapNone), tablewriter.WithHeaderAlignment(tw.AlignLeft))
	if !noHeaders {
		t.Header(header...)
	}
	return t
}

// plainRendition draws tables as kubectl does: no borders or rules.
var plainRendition = tw.Rendition{
	Borders: tw.Border{Left: tw.Off, Right: tw.Off, Top: tw.Off, Bottom: tw.Off},
	Settings: tw.Settings{
		Separators: tw.Separators{ShowHeader: tw.Off, ShowFooter: tw.Off, BetweenRows: tw.Off, BetweenColumns: tw.Off},
		Lines:      tw.Lines{ShowTop: tw.Off, ShowBottom: tw.Off, ShowHeaderLine: tw.Off, ShowFooterLine: tw.Off},
	},
}
