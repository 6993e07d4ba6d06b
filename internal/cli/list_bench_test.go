package cli

import (
	"encoding/binary"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/egwct/egwct/internal/printer"
	"github.com/egwct/egwct/internal/testutil"
	"github.com/egwct/egwct/pkg/ctmap"
	"github.com/egwct/egwct/pkg/profiles"
)

// benchNode creates a private bpffs whose cilium_ct4_global holds n
// entries (and an empty cilium_ct_any4_global).
func benchNode(b *testing.B, n int) (fs, state string, m *ctmap.Map) {
	fs = testutil.PrivateBPFFS(b)
	res, _ := profiles.Resolve("1.18.3")
	tcp, _ := res.Profile.Map(profiles.RoleCTTCP, 4)
	anySpec, _ := res.Profile.Map(profiles.RoleCTAny, 4)
	m, err := ctmap.Create(fs, tcp, uint32(n+n/2))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	a, err := ctmap.Create(fs, anySpec, 1024)
	if err != nil {
		b.Fatal(err)
	}
	a.Close()
	now, _ := ctmap.Now(nodeClockKtime)
	const chunk = 1 << 16
	keys := make([][14]byte, chunk)
	vals := make([][56]byte, chunk)
	for done := 0; done < n; {
		c := min(chunk, n-done)
		for i := 0; i < c; i++ {
			id := uint32(done + i)
			binary.BigEndian.PutUint32(keys[i][0:], 0x0a010000|id>>12)
			binary.BigEndian.PutUint32(keys[i][4:], 0xc6120000|id&0xfff)
			binary.BigEndian.PutUint16(keys[i][8:], 443)
			binary.BigEndian.PutUint16(keys[i][10:], uint16(32768+id%28000))
			keys[i][12], keys[i][13] = ctmap.ProtoTCP, 0
			e := ctmap.CTEntry{}
			e.SetLifetime(now + 8000 - id%9000)
			e.SetFlags(ctmap.FlagSeenNonSyn)
			e[42], e[43] = 0x1a, 0x1a
			binary.LittleEndian.PutUint32(e[44:], 10000+id%64)
			vals[i] = e
		}
		if _, err := m.BatchUpdate(keys[:c], vals[:c], nil); err != nil {
			b.Fatal(err)
		}
		done += c
	}
	return fs, b.TempDir(), m
}

// BenchmarkCTListJSON compares `egwct ct list -o json` over a CT map of 1M
// entries (batched reads, streaming encoder) with a naive walk of the same
// map, one get-next-key and one lookup system call per element, measured
// in the same run: once alone, once feeding the same JSON encoder. Ratios
// are reported as naive-walk/egwct and naive-json/egwct.
//
//	go test ./internal/cli -run '^$' -bench CTListJSON -benchtime 3x
func BenchmarkCTListJSON(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(itoa(n), func(b *testing.B) {
			fs, state, m := benchNode(b, n)
			o := &listOptions{io: &IO{Out: io.Discard, ErrOut: io.Discard}, print: printer.Flags{Spec: listSpec, Output: "json"},
				node: nodeFlags{BPFFS: fs, CiliumVersion: "1.18.3", StateDir: state}}
			if err := runCTList(o); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var egwct, naiveWalk, naiveJSON time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if err := runCTList(o); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if got := naive(b, m, nil); got != n {
					b.Fatalf("naive walk saw %d of %d", got, n)
				}
				t2 := time.Now()
				naive(b, m, o)
				t3 := time.Now()
				egwct += t1.Sub(t0)
				naiveWalk += t2.Sub(t1)
				naiveJSON += t3.Sub(t2)
			}
			b.ReportMetric(float64(egwct.Nanoseconds())/float64(b.N), "egwct-ns/op")
			b.ReportMetric(float64(naiveWalk.Nanoseconds())/float64(b.N), "naive-walk-ns/op")
			b.ReportMetric(float64(naiveJSON.Nanoseconds())/float64(b.N), "naive-json-ns/op")
			b.ReportMetric(float64(naiveWalk)/float64(egwct), "naive-walk/egwct")
			b.ReportMetric(float64(naiveJSON)/float64(egwct), "naive-json/egwct")
		})
	}
}

// naive walks with get-next-key and lookup per element; with o, it also
// encodes each element as ct list does.
func naive(b *testing.B, m *ctmap.Map, o *listOptions) int {
	var out *output
	var times ctmap.Times
	var layout profiles.CTEntryLayout
	if o != nil {
		pr, _ := newPrinter(&printer.Flags{Spec: listSpec, Output: "json"})
		out = newOutput(io.Discard, pr, "CTEntryList", nil, nil)
		o.printer = pr
		res, _ := profiles.Resolve("1.18.3")
		layout = res.Profile.CTEntry
		n, _ := o.node.open()
		times, _ = n.times()
	}
	var key, next [14]byte
	var val [56]byte
	var c ctmap.CT
	count := 0
	err := m.NextKey(nil, &next)
	for err == nil {
		key = next
		if err := m.Lookup(&key, &val); err == nil {
			count++
			if o != nil {
				c.Key, _ = ctmap.DecodeTuple(key[:])
				c.Value = val
				_ = o.ctEntry(out, m, key[:], &c, times, layout)
			}
		}
		err = m.NextKey(&key, &next)
	}
	if out != nil {
		out.close()
	}
	return count
}

func itoa(n int) string {
	if n >= 1_000_000 {
		return filepath.Base(string(rune('0'+n/1_000_000))) + "M"
	}
	return string(rune('0'+n/100_000)) + "00k"
}

var nodeClockKtime = nodeconfigKtime()
