// Command extract is built by hack/verify-profiles against one Cilium
// release (github.com/cilium/cilium@vX.Y.Z from the Go module proxy) and
// reports, as JSON, what that release's own Go code says about the maps,
// types, defaults and garbage collection egwct depends on. It is never part
// of egwct: the driver copies these files into a temporary module per
// release, with a build tag naming the release's API generation.
//
// It must run as root: it mounts a private bpffs and lets Cilium's own
// constructors create and pin the maps there.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/egwct/egwct/hack/verify-profiles/facts"
)

// options are the agent options of one run.
type options struct {
	name string
	// sizes: explicit map sizes instead of the defaults.
	ctTCP, ctAny, nat, egw int
	distributedLRU         bool
}

// runs are the option sets every release is checked with; a release that
// lacks an option skips the run with a note (see supports).
var runs = map[string]options{
	"default":             {name: "default"},
	"sizes":               {name: "sizes", ctTCP: 100003, ctAny: 50021, nat: 70001, egw: 4099},
	"bpf-distributed-lru": {name: "bpf-distributed-lru", distributedLRU: true},
}

func main() {
	run := flag.String("run", "default", "option set: default, sizes or bpf-distributed-lru")
	src := flag.String("src", "", "the Cilium module's source directory (for the agent's flag defaults)")
	out := flag.String("out", "", "write the JSON here instead of stdout")
	flag.Parse()
	if !strings.HasSuffix(os.Args[0], "cilium-agent") {
		// Otherwise Cilium's bpf.MapPath pins under the first bpffs in the
		// mount table, not under the private one (pkg/components.IsCiliumAgent).
		fatalf("the binary must be named cilium-agent (it is %s)", os.Args[0])
	}
	opts, ok := runs[*run]
	if !ok {
		fatalf("unknown -run %q", *run)
	}
	r, err := extract(opts, *src)
	if err != nil {
		fatalf("%v", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		fatalf("%v", err)
	}
	if *out == "" {
		os.Stdout.Write(append(b, '\n'))
		return
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "extract: "+format+"\n", a...)
	os.Exit(1)
}

func extract(opts options, src string) (*facts.Run, error) {
	root, err := os.MkdirTemp("", "egwct-verify-bpffs-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(root)
	// A private mount namespace is the driver's job (unshare); the mount
	// itself is ours, so that it goes away with the process either way.
	if err := unix.Mount("bpffs", root, "bpf", 0, ""); err != nil {
		return nil, fmt.Errorf("mount bpffs at %s: %w", root, err)
	}
	defer unix.Unmount(root, unix.MNT_DETACH)

	r := &facts.Run{Cilium: ciliumVersion(), Options: opts.name}
	if !supports(opts) {
		r.Notes = append(r.Notes, "this release has no agent option for the "+opts.name+" run")
		return r, nil
	}
	if err := createMaps(root, opts); err != nil {
		return nil, fmt.Errorf("create maps with Cilium's constructors: %w", err)
	}
	if r.Maps, err = readPinned(filepath.Join(root, "tc", "globals")); err != nil {
		return nil, err
	}
	if opts.name != "default" {
		return r, nil
	}
	r.Types = map[string]facts.Type{}
	for name, v := range goTypes() {
		r.Types[name] = flatten(reflect.TypeOf(v))
	}
	r.Constants = constants()
	if src != "" {
		if r.FlagDefaults, err = flagDefaults(src, r.Constants); err != nil {
			return nil, err
		}
	}
	for _, family := range []int{4, 6} {
		c, err := gcCase(family)
		if err != nil {
			return nil, fmt.Errorf("GC of IPv%d: %w", family, err)
		}
		r.GC = append(r.GC, c)
	}
	return r, nil
}

// readPinned reads back every map pinned in dir, as the kernel reports it.
func readPinned(dir string) ([]facts.Map, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []facts.Map
	for _, e := range ents {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			return nil, fmt.Errorf("open pinned %s: %w", e.Name(), err)
		}
		info, err := m.Info()
		m.Close()
		if err != nil {
			return nil, fmt.Errorf("info of %s: %w", e.Name(), err)
		}
		out = append(out, facts.Map{
			Name: e.Name(), Type: uint32(info.Type), KeySize: info.KeySize,
			ValueSize: info.ValueSize, MaxEntries: info.MaxEntries, Flags: info.Flags,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// flatten lists the leaf fields of a struct type with their offsets from
// its start; embedded structs (Cilium's keys embed tuple types) are expanded.
func flatten(t reflect.Type) facts.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	ft := facts.Type{Size: int(t.Size())}
	var walk func(t reflect.Type, base uintptr)
	walk = func(t reflect.Type, base uintptr) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type, base+f.Offset)
				continue
			}
			if f.Name == "_" {
				continue
			}
			ft.Fields = append(ft.Fields, facts.Field{
				Go: f.Name, C: f.Tag.Get("align"),
				Offset: int(base + f.Offset), Size: int(f.Type.Size()),
			})
		}
	}
	walk(t, 0)
	return ft
}

// ciliumVersion is the release the binary was built against, from the
// module's build info.
func ciliumVersion() string {
	if v, ok := buildVersion("github.com/cilium/cilium"); ok {
		return strings.TrimPrefix(v, "v")
	}
	return "unknown"
}

// stringify formats compiled values as facts.Run documents them.
func stringify(m map[string]any) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}
