// Command verify-profiles checks egwct's Cilium profiles (pkg/profiles)
// against Cilium's own Go code. For each release it builds the extractor
// (./_extract) against github.com/cilium/cilium@vX.Y.Z from the Go module
// proxy, in a temporary module under the cache directory, runs it as root
// in a private mount namespace — it lets Cilium's own constructors create
// the CT, SNAT and egress-policy maps in a private bpffs, reads them back,
// records the layouts of Cilium's Go key/value types, the agent's flag
// defaults and GC bounds, and runs Cilium's CT GC on a fixture — and
// compares what it found with the profile of that release's minor.
//
// It is a tool module of its own: egwct never depends on Cilium's code.
//
//	go run . -versions 1.20.2,1.19.7     # check two releases
//	go run .                             # every release the profiles claim
//	go run . -record                     # and update verified.json
//
// Exit status: 0 when every release matched its profile, 1 when a fact
// differs, 2 when a release could not be checked (build, download, run).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/egwct/egwct/hack/verify-profiles/facts"
	"github.com/egwct/egwct/pkg/profiles"
)

func main() {
	versions := flag.String("versions", "", "comma-separated Cilium releases (default: every release the profiles claim in VerifiedAgainst)")
	newest := flag.Bool("newest", false, "only the newest claimed release of each minor")
	minors := flag.String("minors", "", "with -newest: only these minors, e.g. 1.18,1.19,1.20")
	cache := flag.String("cache", defaultCache(), "where the per-release modules and extractor binaries are kept")
	record := flag.Bool("record", false, "write the outcome of each release into "+recordFile)
	flag.Parse()

	list, err := selectVersions(*versions, *newest, *minors)
	if err != nil {
		fmt.Fprintln(os.Stderr, "verify-profiles:", err)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "verify-profiles: must run as root: Cilium's constructors create BPF maps (in a private bpffs)")
		os.Exit(2)
	}
	rec, err := loadRecord(recordFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "verify-profiles:", err)
		os.Exit(2)
	}
	status := 0
	for _, v := range list {
		start := time.Now()
		diffs, err := verify(v, *cache)
		took := time.Since(start).Round(time.Second)
		outcome := Outcome{Checked: time.Now().UTC().Format("2006-01-02")}
		switch {
		case err != nil:
			fmt.Printf("FAIL %s: not checked (%s): %v\n", v, took, err)
			outcome.Result, outcome.Detail = ResultUnchecked, err.Error()
			status = max(status, 2)
		case len(diffs) > 0:
			fmt.Printf("FAIL %s: %d differences with profile (%s):\n", v, len(diffs), took)
			for _, d := range diffs {
				fmt.Println("  -", d)
				outcome.Differences = append(outcome.Differences, d.String())
			}
			outcome.Result = ResultDiffers
			status = max(status, 1)
		default:
			fmt.Printf("ok   %s (%s)\n", v, took)
			outcome.Result = ResultVerified
		}
		rec.Releases[v.String()] = outcome
		// Saved after each release: a long run that is stopped keeps
		// what it checked.
		if *record {
			if err := rec.save(recordFile); err != nil {
				fmt.Fprintln(os.Stderr, "verify-profiles:", err)
				os.Exit(2)
			}
		}
	}
	os.Exit(status)
}

func defaultCache() string {
	if d := os.Getenv("EGWCT_CACHE"); d != "" {
		return filepath.Join(d, "verify-profiles")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "egwct", "verify-profiles")
}

// selectVersions returns the releases to check, oldest first.
func selectVersions(list string, newest bool, minors string) ([]profiles.Version, error) {
	var out []profiles.Version
	if list != "" {
		for _, s := range strings.Split(list, ",") {
			v, err := profiles.ParseVersion(strings.TrimSpace(s))
			if err != nil {
				return nil, err
			}
			if v.Patch < 0 || v.Pre != "" {
				return nil, fmt.Errorf("%s: give a release, e.g. 1.20.2", s)
			}
			out = append(out, v)
		}
		return out, nil
	}
	want := map[string]bool{}
	for _, m := range strings.Split(minors, ",") {
		if m = strings.TrimSpace(m); m != "" {
			want[m] = true
		}
	}
	for _, p := range profiles.All() {
		vs := p.VerifiedAgainst
		if len(want) > 0 && !want[fmt.Sprintf("%d.%d", p.Major, p.Minor)] {
			continue
		}
		if newest && len(vs) > 0 {
			vs = vs[len(vs)-1:]
		}
		out = append(out, vs...)
	}
	if len(out) == 0 {
		return nil, errors.New("no release selected")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out, nil
}

// verify checks one release against the profile of its minor.
func verify(v profiles.Version, cache string) ([]Difference, error) {
	res, err := profiles.Resolve(v.String())
	if err != nil {
		return nil, err
	}
	if res.Profile.Dev {
		return nil, fmt.Errorf("%s is covered by the development profile %s, which has no release to check", v, res.Profile.Name)
	}
	bin, src, err := build(v, cache)
	if err != nil {
		return nil, err
	}
	var runs []facts.Run
	for _, name := range []string{"default", "sizes", "bpf-distributed-lru"} {
		r, err := runExtractor(bin, src, name)
		if err != nil {
			return nil, err
		}
		if r.Cilium != v.String() {
			return nil, fmt.Errorf("the extractor was built against %s, not %s", r.Cilium, v)
		}
		runs = append(runs, *r)
	}
	return Compare(res.Profile, runs), nil
}

func runExtractor(bin, src, run string) (*facts.Run, error) {
	out, err := os.CreateTemp("", "egwct-facts-*.json")
	if err != nil {
		return nil, err
	}
	out.Close()
	defer os.Remove(out.Name())
	// A private mount namespace: the bpffs the extractor mounts is seen by
	// nobody else and goes away with it.
	if err := command("", nil, "unshare", "--mount", "--propagation", "private",
		bin, "-run", run, "-src", src, "-out", out.Name()); err != nil {
		return nil, fmt.Errorf("extractor (%s options): %w", run, err)
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		return nil, err
	}
	var r facts.Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("extractor output: %w", err)
	}
	return &r, nil
}
