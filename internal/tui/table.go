package tui

import (
	"slices"
	"strings"

	"github.com/charmbracelet/x/ansi"
)

// column is one column of a table.
type column struct {
	title string
	width int
	// right aligns numbers; such columns sort descending first.
	right bool
}

// table is a scrollable, sortable, filterable view over n rows that live
// elsewhere (a snapshot's slice): it holds only row numbers, and renders
// only the rows on screen, so hundreds of thousands of rows cost nothing
// to scroll.
type table struct {
	cols []column
	// text is a cell's content; cmp compares two rows by a column.
	text func(row, col int) string
	cmp  func(a, b, col int) int
	// key identifies a row across snapshots (nil: keep the position).
	key func(row int) string
	// search is the text a filter matches (nil: all cells).
	search func(row int) string
	// level marks a cell as worth attention: 1 warn, 2 alert (nil: none).
	level func(row, col int) int

	n       int
	idx     []int
	cursor  int
	offset  int
	sortCol int
	desc    bool
	filter  string
	height  int
	// lower caches each row's search text, lowercased, until the rows
	// change: typing in the filter does not format every row again.
	lower []string
}

// selectedKey identifies the selected row, to find it again after
// setRows; call it before the rows change.
func (t *table) selectedKey() (string, bool) {
	if t.key == nil || t.cursor >= len(t.idx) {
		return "", false
	}
	return t.key(t.idx[t.cursor]), true
}

// setRows replaces the rows (a new snapshot) and selects the row of key
// sel when there is one.
func (t *table) setRows(n int, sel string, hadSel bool) {
	t.n = n
	t.lower = t.lower[:0]
	t.rebuild()
	if hadSel {
		for i, r := range t.idx {
			if t.key(r) == sel {
				t.cursor = i
				break
			}
		}
	}
	t.clamp()
}

// rebuild applies the filter and the sort.
func (t *table) rebuild() {
	t.idx = t.idx[:0]
	f := strings.ToLower(t.filter)
	if f != "" {
		t.cacheText()
	}
	for r := 0; r < t.n; r++ {
		if f == "" || strings.Contains(t.lower[r], f) {
			t.idx = append(t.idx, r)
		}
	}
	col, desc := t.sortCol, t.desc
	slices.SortStableFunc(t.idx, func(a, b int) int {
		c := t.cmp(a, b, col)
		if desc {
			return -c
		}
		return c
	})
	t.clamp()
}

// cacheText fills lower for the current rows.
func (t *table) cacheText() {
	if len(t.lower) == t.n {
		return
	}
	t.lower = t.lower[:0]
	for r := 0; r < t.n; r++ {
		t.lower = append(t.lower, strings.ToLower(t.searchText(r)))
	}
}

func (t *table) searchText(r int) string {
	if t.search != nil {
		return t.search(r)
	}
	var b strings.Builder
	for c := range t.cols {
		b.WriteString(t.text(r, c))
		b.WriteByte(' ')
	}
	return b.String()
}

// setFilter filters rows whose text contains f (case-insensitive).
func (t *table) setFilter(f string) {
	if f == t.filter {
		return
	}
	old, nf := strings.ToLower(t.filter), strings.ToLower(f)
	t.filter = f
	t.cursor, t.offset = 0, 0
	if !strings.Contains(nf, old) {
		t.rebuild()
		return
	}
	// A narrower filter (a character typed): the rows it keeps are among
	// those shown, already in order.
	t.cacheText()
	keep := t.idx[:0]
	for _, r := range t.idx {
		if strings.Contains(t.lower[r], nf) {
			keep = append(keep, r)
		}
	}
	t.idx = keep
	t.clamp()
}

// cycleSort moves the sort to the next column, numbers largest first.
func (t *table) cycleSort() {
	t.sortCol = (t.sortCol + 1) % len(t.cols)
	t.desc = t.cols[t.sortCol].right
	t.rebuild()
}

// reverse flips the sort order.
func (t *table) reverse() {
	t.desc = !t.desc
	t.rebuild()
}

// move moves the cursor by d rows.
func (t *table) move(d int) {
	t.cursor += d
	t.clamp()
}

func (t *table) top()    { t.cursor = 0; t.clamp() }
func (t *table) bottom() { t.cursor = len(t.idx) - 1; t.clamp() }

// page is the number of rows on screen.
func (t *table) page() int { return max(1, t.height) }

func (t *table) clamp() {
	t.cursor = max(0, min(t.cursor, len(t.idx)-1))
	h := t.page()
	if t.cursor < t.offset {
		t.offset = t.cursor
	}
	if t.cursor >= t.offset+h {
		t.offset = t.cursor - h + 1
	}
	t.offset = max(0, min(t.offset, len(t.idx)-h))
}

// selected returns the row under the cursor.
func (t *table) selected() (int, bool) {
	if t.cursor < len(t.idx) {
		return t.idx[t.cursor], true
	}
	return 0, false
}

// header renders the column titles, marking the sort column.
func (t *table) header(width int) string {
	cells := make([]string, len(t.cols))
	for c, col := range t.cols {
		title := col.title
		if c == t.sortCol {
			if t.desc {
				title += "↓"
			} else {
				title += "↑"
			}
		}
		cells[c] = pad(title, col.width, col.right)
	}
	return fit(strings.Join(cells, " "), width)
}

// lines renders the visible rows, calling style on the selected one.
func (t *table) lines(width int, selected func(string) string, emphasize func(level int, cell string) string) []string {
	h := t.page()
	out := make([]string, 0, h)
	cells := make([]string, len(t.cols))
	for i := t.offset; i < len(t.idx) && i < t.offset+h; i++ {
		r := t.idx[i]
		for c, col := range t.cols {
			cells[c] = pad(Clean(t.text(r, c)), col.width, col.right)
		}
		line := fit(strings.Join(cells, " "), width)
		switch {
		case i == t.cursor && selected != nil:
			line = selected(pad(line, width, false))
		case t.level != nil && emphasize != nil:
			line = t.emphasized(r, cells, width, emphasize)
		}
		out = append(out, line)
	}
	return out
}

// emphasized renders a row with its marked cells styled, cut at width.
func (t *table) emphasized(r int, cells []string, width int, emphasize func(int, string) string) string {
	var b strings.Builder
	used := 0
	for c, cell := range cells {
		if c > 0 {
			cell = " " + cell
		}
		w := ansi.StringWidth(cell)
		if used+w > width {
			cell = strings.TrimRight(ansi.Truncate(cell, width-used, ""), " ")
			w = width - used
		}
		if lv := t.level(r, c); lv > 0 {
			b.WriteString(emphasize(lv, cell))
		} else {
			b.WriteString(cell)
		}
		used += w
		if used >= width {
			break
		}
	}
	return strings.TrimRight(b.String(), " ")
}

// pad fits s into w cells, truncating with an ellipsis.
func pad(s string, w int, right bool) string {
	n := ansi.StringWidth(s)
	if n > w {
		return ansi.Truncate(s, w, "…")
	}
	if right {
		return strings.Repeat(" ", w-n) + s
	}
	return s + strings.Repeat(" ", w-n)
}

// fit truncates a line to the terminal's width and trims trailing blanks.
func fit(s string, w int) string {
	if w > 0 && ansi.StringWidth(s) > w {
		s = ansi.Truncate(s, w, "")
	}
	return strings.TrimRight(s, " ")
}
