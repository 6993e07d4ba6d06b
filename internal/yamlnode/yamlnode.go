// Package yamlnode has the few helpers egwct needs to walk decoded YAML
// nodes while keeping their positions.
package yamlnode

import "go.yaml.in/yaml/v3"

// Get returns the value of key in mapping n (aliases resolved), or nil when
// n is not a mapping or has no such key.
func Get(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return Resolve(n.Content[i+1])
		}
	}
	return nil
}

// Str returns the value of a scalar node, or "" for anything else.
func Str(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// Resolve follows aliases (a bounded number of them) to the node they name.
func Resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	return n
}
