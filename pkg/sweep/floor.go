package sweep

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/egwct/egwct/pkg/ctmap"
)

// EmptyWalk walks a CT map as the foreach engine does,
// bpf_for_each_map_elem, with a callback that does nothing, and returns
// how long the walk took (the program's load not included): the floor no
// sweep of the map goes below. Benchmarks report it beside the sweep.
func EmptyWalk(m *ctmap.Map) (time.Duration, error) {
	spec, err := loadSweeper()
	if err != nil {
		return 0, err
	}
	info, err := m.Info()
	if err != nil {
		return 0, err
	}
	// The empty callback reads nothing: the placeholder takes any CT
	// map's key size.
	ms := spec.Maps["ct_tcp4"]
	ms.KeySize, ms.ValueSize, ms.MaxEntries, ms.Flags = m.Spec.KeySize, m.Spec.ValueSize, info.MaxEntries, info.Flags
	var o struct {
		Walk *ebpf.Program `ebpf:"walk_only"`
	}
	if err := spec.LoadAndAssign(&o, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"ct_tcp4": m.Map}}); err != nil {
		return 0, fmt.Errorf("load the empty walk: %w", err)
	}
	defer o.Walk.Close()
	t0 := time.Now()
	if _, err := o.Walk.Run(&ebpf.RunOptions{}); err != nil {
		return 0, fmt.Errorf("walk %s: %w", m.Spec.Name, err)
	}
	return time.Since(t0), nil
}
