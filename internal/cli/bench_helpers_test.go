package cli

import "github.com/egwct/egwct/pkg/nodeconfig"

func nodeconfigKtime() nodeconfig.Clock { return nodeconfig.Clock{Mode: nodeconfig.Ktime} }
