package validate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/egwct/egwct/pkg/policy"
)

// manifest10k is a realistic 10,000-document stream: policies with
// selectors, CIDRs, a gateway and a timeout text, as a large cluster's
// `kubectl get cegp -o yaml` split into documents would be.
func manifest10k() []byte {
	var b strings.Builder
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&b, `---
apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata:
  name: team-%[1]d-egress
  annotations:
    owner: team-%[1]d
spec:
  selectors:
    - podSelector:
        matchLabels:
          app: service-%[1]d
          io.kubernetes.pod.namespace: team-%[2]d
  destinationCIDRs:
    - 203.0.%[3]d.0/24
    - 198.51.%[3]d.0/24
  excludedCIDRs:
    - 203.0.%[3]d.128/25
  egressGateway:
    nodeSelector:
      matchLabels:
        egress-gateway: "true"
    egressIP: 192.168.%[3]d.10
  connection-timeouts: |
    bpfCtTimeoutRegularTcpSyn: 30s
    bpfCtTimeoutRegularTcp: %[4]dm
    bpfCtTimeoutRegularTcpFin: 5s
    bpfCtTimeoutRegularAny: 30s
`, i, i%50, i%256, 10+i%10)
	}
	return []byte(b.String())
}

// decodeOnly is the baseline: decode every document into YAML nodes (the
// least any position-keeping reader must do), nothing else.
func decodeOnly(data []byte) (n int) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return n
		} else if err != nil {
			panic(err)
		}
		n++
	}
}

// validateAll is what `egwct validate` does with the file.
func validateAll(v *Validator, data []byte) (findings int) {
	err := policy.NewSource("bench.yaml", data).Each(func(p *policy.Policy) {
		findings += len(v.Policy(p).Findings)
	}, nil)
	if err != nil {
		panic(err)
	}
	return findings
}

// BenchmarkValidate10k compares validating the 10,000-document manifest
// with only decoding it, in the same run. The goal is validate ≤ 1.5× decode;
// the ratio is reported as the metric "validate/decode".
//
//	go test ./pkg/validate -run '^$' -bench Validate10k -benchtime 5x
func BenchmarkValidate10k(b *testing.B) {
	data := manifest10k()
	v := validator(b, "1.18.3", nil)
	if n := decodeOnly(data); n != 10000 {
		b.Fatalf("decoded %d documents", n)
	}
	if f := validateAll(v, data); f != 10000 {
		b.Fatalf("%d findings, want one (below-rfc5382) per policy", f)
	}
	b.SetBytes(int64(len(data)))
	var decode, validate time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate so that both see the same machine noise.
		t0 := time.Now()
		decodeOnly(data)
		t1 := time.Now()
		validateAll(v, data)
		t2 := time.Now()
		decode += t1.Sub(t0)
		validate += t2.Sub(t1)
	}
	b.ReportMetric(float64(decode.Nanoseconds())/float64(b.N), "decode-ns/op")
	b.ReportMetric(float64(validate.Nanoseconds())/float64(b.N), "validate-ns/op")
	b.ReportMetric(float64(validate)/float64(decode), "validate/decode")
}
