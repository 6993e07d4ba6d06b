package enforce

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkResolve resolves 50 policies (each selecting one app of 500
// towards two CIDRs) against 50,000 endpoints: the agent's work after a
// change.
//
//	go test ./internal/enforce -run '^$' -bench Resolve -benchtime 5x
func BenchmarkResolve(b *testing.B) {
	var pols, eps strings.Builder
	for j := range 50 {
		fmt.Fprintf(&pols, "%s", strings.Replace(cegp(fmt.Sprintf("pol-%d", j), fmt.Sprintf("app-%d", j), "bpfCtTimeoutRegularTcp: 5m"),
			"destinationCIDRs: [192.0.2.0/24]", fmt.Sprintf("destinationCIDRs: [203.0.%d.0/24, 198.51.%d.0/24]", j, j), 1))
	}
	for i := range 50000 {
		eps.WriteString(cep(fmt.Sprintf("ep-%d", i), fmt.Sprintf("app-%d", i%500), fmt.Sprintf("10.%d.%d.%d", 64+i>>16, i>>8&255, i&255)))
	}
	objs := objects(b, "p.yaml", pols.String(), "e.yaml", eps.String())
	r := NewResolver(testEnv(b))
	b.ResetTimer()
	for range b.N {
		res := r.Resolve(objs)
		if res.Keys() != 50*100*2 {
			b.Fatalf("%d keys", res.Keys())
		}
	}
}
